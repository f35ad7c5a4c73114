/**
 * How `scanbox run` is started: the V8 flags and the environment below. systemd/scanbox.service passes the same
 * (ExecStart= and Environment=; test/field/unit.test.ts holds the two together), and the rig, the crash matrix
 * and the bench start the daemon with them, so what is tested and measured is what runs on the counter.
 *
 * - `--max-semi-space-size=1`: V8's young generation, left to itself, grows to 16 MB per semi-space under a
 *   steady stream of short-lived objects (every sale is a few requests and XML documents) and never gives it
 *   back; 1 MB costs more minor collections, each well under a millisecond at this heap size.
 * - `--max-old-space-size=64`: the JS heap stays near 13 MB on a busy counter. A leak would end in a crash
 *   and a restart by systemd (the journal keeps every sale) instead of a box that slowly swaps.
 * - `--no-sparkplug`: V8's baseline compiler turns every function that runs a few times into machine code
 *   and keeps it, about 7 MB for this daemon's libraries; the few hot paths of a sale are still optimised by
 *   TurboFan, and the bench measured no change in the box's overhead without it.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--max-old-space-size=64', '--no-sparkplug'];

/**
 * The environment on top of the configuration:
 * - `MALLOC_ARENA_MAX=1`: glibc gives each thread that allocates (libuv's pool, V8's compiler and GC helpers)
 *   an arena of its own, and their fragments stay resident; one arena saved 5 MB after 10,000 sales in the
 *   bench. The daemon handles one sale at a time, so the threads have nothing to contend for.
 */
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '1' };
