/**
 * An attacker, run as its own process against a real server (the tests in
 * tests/hostile-*.test.ts spawn it): one kind of abuse per mode, then one JSON
 * line on stdout saying what the server answered. It speaks the wire protocol
 * directly (net/link.ts and raw sockets), as a hostile client would, not
 * through the well-behaved client.
 *
 *   bun hostile-client.ts MODE ADDR [USER PASSWORD] [N]
 *
 * The CA to trust comes in HOSTILE_CA (PEM), as the test process made it.
 */
import { ClientTrust, setDefaultTrust } from "../../net/trust";
import { Link } from "../../net/link";
import { loginKeys } from "../../client/account";
import { ChatError } from "../../protocol/errors";

setDefaultTrust(new ClientTrust(undefined, { caPem: process.env.HOSTILE_CA! }));

const [mode, addr, user = "", password = "", countText = "100"] = process.argv.slice(2);
const n = Number(countText);

/** Counts outcomes by code ("ok" for success). */
function tally(results: PromiseSettledResult<unknown>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) {
    const code = r.status === "fulfilled" ? "ok" : r.reason instanceof ChatError ? r.reason.code : String(r.reason);
    out[code] = (out[code] ?? 0) + 1;
  }
  return out;
}

async function loggedIn(): Promise<Link> {
  const link = await Link.connect(addr!, { hello: { role: "client" } });
  const { authKey } = await loginKeys(link, user, password);
  await link.request("login", { user, auth: authKey, device: { id: `hostile-${mode}-${process.pid}`, name: "hostile" } }, 60_000);
  return link;
}

async function run(): Promise<Record<string, unknown>> {
  switch (mode) {
    case "pipeline": {
      // N requests written at once, without waiting for any answer (HOSTILE_OP, with HOSTILE_ARGS).
      const link = user ? await loggedIn() : await Link.connect(addr!, { hello: { role: "client" } });
      const args = JSON.parse(process.env.HOSTILE_ARGS ?? "{}");
      const results = await Promise.allSettled(Array.from({ length: n }, () => link.request(process.env.HOSTILE_OP!, args, 120_000)));
      link.close();
      // The longest retry-after named, so a test can see that refusals say how long to wait.
      const retryAfterMs = Math.max(0, ...results.map((r) => (r.status === "rejected" && r.reason instanceof ChatError ? (r.reason.retryAfterMs ?? 0) : 0)));
      return { codes: tally(results), retryAfterMs };
    }
    case "signups": {
      // N signups pipelined on one connection before login: each an argon2id hash if let through.
      const link = await Link.connect(addr!, { hello: { role: "client" } });
      const auth = new Uint8Array(32);
      const results = await Promise.allSettled(
        Array.from({ length: n }, (_, i) =>
          link.request("signup", { user: `${user}${i}`, auth, salt: new Uint8Array(16), kdf: { alg: "scrypt", N: 1024, r: 8, p: 1 }, dh: new Uint8Array(32), sign: new Uint8Array(32), backup: new Uint8Array(64) }, 60_000),
        ),
      );
      link.close();
      return { codes: tally(results) };
    }
    case "guesses": {
      // N wrong logins at once, each on its own connection (as when a lock has just expired).
      const links = await Promise.all(Array.from({ length: n }, () => Link.connect(addr!, { hello: { role: "client" } })));
      const results = await Promise.allSettled(links.map((l, i) => l.request("login", { user, auth: new Uint8Array(32).fill(i + 1), device: { id: `guess-device-${i}`, name: "guess" } }, 60_000)));
      for (const l of links) l.close();
      return { codes: tally(results) };
    }
    case "partial": {
      // Before login: a header announcing a frame past the stranger's budget, and a little of its body.
      let onBye: (code: string) => void = () => {};
      const bye = new Promise<string>((resolve) => {
        onBye = resolve;
        setTimeout(() => resolve("none"), 10_000).unref();
      });
      const link = await Link.connect(addr!, { hello: { role: "client" }, onBye: (e) => onBye(e.code) });
      const header = new Uint8Array([0, 1, 0, 0]); // 65,536 bytes
      (link as unknown as { socket: { write(b: Uint8Array): void } }).socket.write(new Uint8Array([...header, 1, 2, 3]));
      return { bye: await bye };
    }
    case "connections": {
      // N raw TCP connections held open (no TLS, no hello): how many the server keeps.
      const [host, port] = [addr!.slice(0, addr!.lastIndexOf(":")), Number(addr!.slice(addr!.lastIndexOf(":") + 1))];
      let closed = 0;
      const sockets = await Promise.all(
        Array.from({ length: n }, () => Bun.connect({ hostname: host, port, socket: { data() {}, close() { closed++; }, error() {} } }).catch(() => undefined)),
      );
      await Bun.sleep(1500);
      const kept = sockets.filter(Boolean).length - closed;
      for (const s of sockets) s?.end();
      return { kept, closed };
    }
    case "sends": {
      // N sends as fast as the link takes them.
      const link = await loggedIn();
      const results = await Promise.allSettled(Array.from({ length: n }, () => link.request("send", { to: process.env.HOSTILE_TO!, cmid: crypto.randomUUID(), body: new Uint8Array(16) })));
      const limited = results.find((r) => r.status === "rejected" && (r.reason as ChatError).code === "E_RATE_LIMITED") as PromiseRejectedResult | undefined;
      link.close();
      return { codes: tally(results), retryAfterMs: (limited?.reason as ChatError | undefined)?.retryAfterMs };
    }
    case "uploads": {
      // N uploads begun and never finished, then one past the quota.
      const link = await loggedIn();
      const to = process.env.HOSTILE_TO!;
      const results = await Promise.allSettled(Array.from({ length: n }, () => link.request("file.begin", { to, size: 16 * 1024, chunkSize: 16 * 1024, chunks: 1 })));
      const big = await link.request("file.begin", { to, size: Number(process.env.HOSTILE_BIG), chunkSize: 512 * 1024, chunks: Math.ceil(Number(process.env.HOSTILE_BIG) / (512 * 1024)) }).then(
        () => "ok",
        (e: ChatError) => e.code,
      );
      link.close();
      return { codes: tally(results), big };
    }
    case "resume": {
      // One resume with a token (the PASSWORD argument): what the server answers.
      const link = await Link.connect(addr!, { hello: { role: "client" } });
      const code = await link.request("resume", { user, token: password }, 60_000).then(
        () => "ok",
        (e: ChatError) => e.code,
      );
      link.close();
      return { code };
    }
    case "hoarders": {
      // Readers (HOSTILE_READERS, same password) log in and stop reading; USER sends each of them N bodies
      // of HOSTILE_BODY bytes in turn, so the server queues for them all at once. Then the readers read
      // again, and we report how each ended (its bye's code and words) and what the sends got.
      const readers = process.env.HOSTILE_READERS!.split(",");
      const ends: { code: string; message: string }[] = [];
      const links = await Promise.all(
        readers.map(async (name) => {
          const link = await Link.connect(addr!, { hello: { role: "client" }, onBye: (e) => ends.push({ code: e.code, message: e.message }) });
          const { authKey } = await loginKeys(link, name, password);
          await link.request("login", { user: name, auth: authKey, device: { id: `hoarder-${process.pid}`, name: "hoarder" } }, 60_000);
          await link.request("sync", {}, 60_000);
          (link as unknown as { socket: { pause(): void } }).socket.pause();
          return link;
        }),
      );
      const sender = await loggedIn();
      const body = new Uint8Array(Number(process.env.HOSTILE_BODY));
      const codes: Record<string, number> = {};
      for (let round = 0; round < n; round++) {
        for (const to of readers) {
          const code = await sender.request("send", { to, cmid: crypto.randomUUID(), body }, 60_000).then(
            () => "ok",
            async (e: ChatError) => {
              if (e.retryAfterMs) await Bun.sleep(e.retryAfterMs);
              return e.code;
            },
          );
          codes[code] = (codes[code] ?? 0) + 1;
        }
      }
      for (const link of links) (link as unknown as { socket: { resume(): void } }).socket.resume();
      const deadline = Date.now() + 10_000;
      while (ends.length < readers.length && Date.now() < deadline) await Bun.sleep(50);
      for (const link of links) link.close();
      sender.close();
      return { codes, ends };
    }
    case "members": {
      // A group change naming N people (far past any group's limit).
      const link = await loggedIn();
      const names = Array.from({ length: n }, (_, i) => `nobody${i}`);
      const code = await link.request("group.create", { group: `${user}g`, members: names }).then(
        () => "ok",
        (e: ChatError) => e.code,
      );
      link.close();
      return { code };
    }
    default:
      throw new Error(`unknown mode ${mode}`);
  }
}

const result = await run();
console.log(JSON.stringify(result));
process.exit(0);
