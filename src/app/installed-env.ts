import { existsSync, readFileSync } from 'node:fs';

/**
 * What systemd gives the daemon (EnvironmentFile=, LoadCredential=), given to a technician's command run
 * by hand: the settings of /etc/scanbox/scanbox.env and the secret files of /etc/scanbox, which carry the
 * credential names (apikey, apiclient_cert.pem, apiclient_key.pem). Variables already in the environment
 * win, so a command can still be pointed elsewhere. Reading the secrets needs root, as installed.
 */

export const INSTALLED_ENV_FILE = '/etc/scanbox/scanbox.env';
export const INSTALLED_CREDENTIALS = '/etc/scanbox';

/** Parses `NAME=value` lines as systemd's EnvironmentFile= does for the simple cases the template uses. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const name = line.slice(0, eq).trim();
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && ((value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'")))) {
      value = value.slice(1, -1);
    }
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) out[name] = value;
  }
  return out;
}

export function installedEnv(
  env: NodeJS.ProcessEnv,
  paths: { envFile?: string; credentials?: string } = {},
): NodeJS.ProcessEnv {
  const envFile = paths.envFile ?? INSTALLED_ENV_FILE;
  const credentials = paths.credentials ?? INSTALLED_CREDENTIALS;
  const merged: NodeJS.ProcessEnv = {};
  if (existsSync(envFile)) {
    try {
      Object.assign(merged, parseEnvFile(readFileSync(envFile, 'utf8')));
    } catch {
      // Not readable (not root): the configuration check names what is missing.
    }
  }
  Object.assign(merged, env);
  // The secrets systemd hands the daemon: the merchant's (apikey ...), or in backend mode the box's own.
  const held = ['apikey', 'backend_cert.pem'].some((name) => existsSync(`${credentials}/${name}`));
  if (!merged.CREDENTIALS_DIRECTORY && held) merged.CREDENTIALS_DIRECTORY = credentials;
  return merged;
}
