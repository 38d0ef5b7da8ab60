/**
 * What the client keeps between runs, under CHATTERBOX_HOME/<user>/: the resume
 * token and how far each conversation has been shown. Written atomically (temp
 * file, then rename) and readable by the user alone.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export interface ClientState {
  token?: string;
  /** Highest sequence number shown, per conversation id. */
  shown: Record<string, number>;
  /** Recent (sender, client message id) pairs and their message ids, to reject replays. */
  seen?: [string, number][];
}

export function homeDir(): string {
  return process.env.CHATTERBOX_HOME || join(homedir(), ".chatterbox");
}

export function userDir(user: string): string {
  const dir = join(homeDir(), user);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export function loadState(user: string): ClientState {
  try {
    const parsed = JSON.parse(readFileSync(join(userDir(user), "state.json"), "utf8"));
    return { token: typeof parsed.token === "string" ? parsed.token : undefined, shown: parsed.shown ?? {}, seen: parsed.seen };
  } catch {
    return { shown: {} };
  }
}

export function saveState(user: string, state: ClientState): void {
  const file = join(userDir(user), "state.json");
  writeFileSync(`${file}.tmp`, JSON.stringify(state), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}
