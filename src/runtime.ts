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
 * The environment on top of the configuration (glibc's malloc, read once at start):
 * - `MALLOC_ARENA_MAX=1`: glibc gives each thread that allocates (libuv's pool, V8's compiler and GC helpers)
 *   an arena of its own, and their fragments stay resident; one arena saved 5 MB after 10,000 sales in the
 *   bench. The daemon handles one sale at a time, so the threads have nothing to contend for.
 * - `MALLOC_MMAP_THRESHOLD_=16384` and `MALLOC_TRIM_THRESHOLD_=131072`: with one arena, every thread's blocks
 *   come from the main heap (brk), which can only shrink from its top. V8's helper threads take tens of MB
 *   there for a short while in the first minutes (the bench's strace of brk saw the heap grow by 33 MB and fall
 *   back within 0.3 s, just after start; its stacks were mostly TurboFan's zones, 32 KB segments), and whether the heap falls
 *   back depends on whether another thread's small block landed above them meanwhile: a matter of timing. The
 *   same daemon then kept 5 to 37 MB in its heap, run after run (the bench's memory figure 31 to 55 MB).
 *   A fixed threshold of 16 KB puts every block of 16 KB or more in a mapping of its own, given back to the
 *   kernel when it is freed, and stops glibc from raising the threshold after a large free (its default). The
 *   heap then stayed at 4.7 to 6.0 MB in every run, on a quiet and a loaded machine alike; the cost is an mmap
 *   and a munmap for each such block (TLS records, zone segments), a few microseconds, not seen in the bench's
 *   overhead rows.
 */
export const DAEMON_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: '1',
  MALLOC_MMAP_THRESHOLD_: '16384',
  MALLOC_TRIM_THRESHOLD_: '131072',
};
