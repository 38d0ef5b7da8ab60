/**
 * Saving a received file, for the commands that show messages (inbox, chat).
 */
import type { ChatError } from "../protocol/errors";
import { progressBar } from "./progress";
import type { ChatSession, Received } from "./session";

/** Downloads a received file and says where it went (and returns it), or why it was refused. */
export async function saveFile(session: ChatSession, m: Received, json: boolean, print: (line: string) => void): Promise<string | undefined> {
  const file = m.file!;
  try {
    const path = await session.fetchFile(file, m.from, progressBar(`receiving ${file.name}`, file.size));
    print(json ? JSON.stringify({ type: "file", id: file.id, msg: m.id, saved: path }) : `  saved to ${path}`);
    return path;
  } catch (error) {
    const e = error as ChatError;
    print(json ? JSON.stringify({ type: "error", code: e.code, message: e.message, msg: m.id }) : `  ⚠ ${e.message}`);
  }
}
