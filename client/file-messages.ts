/**
 * Files as messages: a file is uploaded in sealed chunks (./files.ts), then a
 * message that carries its key goes through the outbox; a received file is
 * fetched with the key from its message, found again by the file's id when
 * only that is known.
 */
import { ChatError } from "../protocol/errors";
import type { WireMessage } from "../protocol/messages";
import type { Content, FileMeta } from "./content";
import { download, upload, type Caller, type Target } from "./files";
import type { SendResult } from "./lanes";
import { bytesOf } from "./inflow";
import { progressBar, type Progress } from "./progress";
import type { Received } from "./received";

/** What file messages need around them. */
export interface FileMessageParts {
  /** The session, as file transfer sees it: requests that survive a reconnect. */
  caller: Caller;
  /** The outbox: the file's message is sent like any other, once. */
  send(target: Target, content: Content, cmid: string): Promise<SendResult>;
  /** Opens a message out of order (not from delivery). */
  read(message: WireMessage): Promise<Received>;
}

export class FileMessages {
  constructor(private readonly parts: FileMessageParts) {}

  /** Run again after a break, it resumes from the chunks the server has (and sends the message once). */
  async send(target: Target, path: string, progress: Progress = progressBar(`sending ${path}`, 0, false)): Promise<SendResult & { file: FileMeta }> {
    const sent = await upload(this.parts.caller, path, target, progress);
    const result = await this.parts.send(target, { kind: "file", file: sent.meta }, sent.cmid);
    sent.done();
    return { ...result, file: sent.meta };
  }

  fetch(file: FileMeta, from: string, progress?: Progress): Promise<string> {
    return download(this.parts.caller, file, from, progress ?? progressBar(`receiving ${file.name}`, file.size, false));
  }

  /** Finds the message that announced a file (it holds the key), from the position the server names, and fetches the file again. */
  async fetchById(fileId: string, progress?: (file: FileMeta) => Progress): Promise<{ path: string; file: FileMeta; from: string }> {
    const caller = this.parts.caller;
    const info = await caller.call("file.info", { file: fileId });
    for (let after = (info.after as number) ?? 0; ; ) {
      const page = (await caller.call("fetch", { conv: info.conv, after, limit: 500 })).messages as WireMessage[];
      for (const m of page) {
        const received = await this.parts.read(bytesOf(m));
        if (received.file?.id === fileId) {
          return { path: await this.fetch(received.file, received.from, progress?.(received.file)), file: received.file, from: received.from };
        }
      }
      if (page.length === 0) throw new ChatError("E_NO_SUCH_FILE", "No message you can read announces that file");
      after = page[page.length - 1]!.seq;
    }
  }
}
