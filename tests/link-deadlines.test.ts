/**
 * net/link.ts keeps one timer for all of a link's request deadlines: a request
 * that gets no reply still fails with E_TIMEOUT, one with a shorter timeout made
 * after a longer one still fails first, the ones answered meanwhile are not
 * touched, the timer left set after the last answer still ends a later request,
 * and a close fails what is left with E_CLOSED. A real listener
 * (net/listener.ts, plaintext) over a real socket.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { TCPSocketListener } from "bun";
import { Link } from "../net/link";
import { listen, type Connection } from "../net/listener";
import { PLAINTEXT } from "../net/tls";
import { ChatError } from "../protocol/errors";

let server: TCPSocketListener<Connection<undefined>>;
let address = "";

beforeAll(() => {
  server = listen<undefined>({
    port: 0,
    tls: PLAINTEXT,
    initialState: () => undefined,
    routes: {
      echo: { handle: (_conn, req) => ({ said: req.said }) },
      // Never answered: only the caller's deadline ends it.
      never: { handle: () => new Promise<void>(() => {}) },
    },
  });
  address = `127.0.0.1:${server.port}`;
});

afterAll(() => server.stop(true));

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "answered",
    (e) => (e instanceof ChatError ? e.code : String(e)),
  );

test("unanswered requests time out in deadline order, whatever order they were made in; answered ones are untouched", async () => {
  const link = await Link.connect(address, { tls: PLAINTEXT });
  const order: string[] = [];
  const slow = codeOf(link.request("never", {}, 1_500)).then((c) => (order.push("slow"), c));
  const fast = codeOf(link.request("never", {}, 200)).then((c) => (order.push("fast"), c));
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => link.request("echo", { said: i }, 1_000)));
  expect(answers.map((a) => a.said)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  expect(await fast).toBe("E_TIMEOUT");
  expect(await slow).toBe("E_TIMEOUT");
  expect(order).toEqual(["fast", "slow"]);
  // The link still works after its timeouts.
  expect((await link.request("echo", { said: "after" })).said).toBe("after");
  link.close();
});

test("a timeout still fires after every other request was answered and a new one came", async () => {
  const link = await Link.connect(address, { tls: PLAINTEXT });
  const lost = codeOf(link.request("never", {}, 300));
  for (let i = 0; i < 5; i++) expect((await link.request("echo", { said: i })).said).toBe(i);
  expect(await lost).toBe("E_TIMEOUT");
  link.close();
});

test("the timer left set for an answered request's deadline still ends a later one that gets no answer", async () => {
  const link = await Link.connect(address, { tls: PLAINTEXT });
  // Answered at once: the timer stays set for its deadline, which comes before the next request's.
  expect((await link.request("echo", { said: "first" }, 200)).said).toBe("first");
  const lost = codeOf(link.request("never", {}, 600));
  const shorter = codeOf(link.request("never", {}, 300));
  expect(await Promise.all([lost, shorter])).toEqual(["E_TIMEOUT", "E_TIMEOUT"]);
  expect((await link.request("echo", { said: "after" })).said).toBe("after");
  link.close();
});

test("closing the link fails what waits with E_CLOSED, not later with E_TIMEOUT", async () => {
  const link = await Link.connect(address, { tls: PLAINTEXT });
  const waiting = [codeOf(link.request("never", {}, 60_000)), codeOf(link.request("never", {}, 100))];
  link.close();
  expect(await Promise.all(waiting)).toEqual(["E_CLOSED", "E_CLOSED"]);
});
