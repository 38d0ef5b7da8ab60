/**
 * The password: from CHATTERBOX_PASSWORD when set, otherwise typed at a prompt
 * that does not echo. It is asked once per run and kept only in memory.
 */
import { ChatError } from "../protocol/errors";

export function passwordSource(prompt = "Password: ", variable = "CHATTERBOX_PASSWORD"): () => Promise<string> {
  let cached: Promise<string> | undefined;
  return () => (cached ??= readPassword(prompt, variable));
}

async function readPassword(prompt: string, variable: string): Promise<string> {
  const fromEnv = process.env[variable];
  if (fromEnv) return fromEnv;
  const stdin = process.stdin;
  if (!stdin.isTTY) throw new ChatError("E_AUTH", `No terminal to ask for the password: set ${variable}`);
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let typed = "";
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n") {
          done();
          resolve(typed);
          return;
        } else if (ch === "\u0003") {
          done();
          reject(new ChatError("E_AUTH", "Cancelled"));
          return;
        } else if (ch === "\u007f" || ch === "\b") {
          typed = typed.slice(0, -1);
        } else {
          typed += ch;
        }
      }
    };
    const done = () => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
    };
    stdin.on("data", onData);
  });
}
