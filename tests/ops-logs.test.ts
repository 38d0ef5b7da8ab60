/**
 * The log of a real `serve` process: JSON lines on stdout, each with its role
 * and server id, refusals with their code and request id; and the pretty form.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rawLink, startCluster, type Cluster } from "./support/cluster";
import { spawnRole, type RoleProcess } from "./support/roles";

let cluster: Cluster;
const started: RoleProcess[] = [];

beforeAll(async () => {
  cluster = await startCluster({ servers: 0 });
});

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop()));
  await cluster?.stop();
});

function serve(...flags: string[]): RoleProcess {
  const server = spawnRole(["serve", "0", "--balancer", cluster.balancerAddr, "--database-url", cluster.url, ...flags], { CHATTERBOX_LOG_LEVEL: "debug" });
  started.push(server);
  return server;
}

test("serve writes one JSON object a line, each naming its role and server, and a refusal's code and request id", async () => {
  const server = serve("--log-format", "json");
  const [, id, addr] = (await server.waitForLine(/server (\S+) listening on (\S+),/))!;
  const link = await rawLink(addr!);
  try {
    await expect(link.request("send", { to: "x" })).rejects.toMatchObject({ code: "E_NOT_LOGGED_IN" });
  } finally {
    link.close();
  }
  await server.waitForLine(/"code":"E_NOT_LOGGED_IN"/);

  const lines = server.json();
  expect(lines.length).toBeGreaterThanOrEqual(3);
  for (const line of lines) {
    expect(line).toMatchObject({ role: "server", server: id, pid: server.proc.pid });
    expect(["debug", "info", "warn", "error"]).toContain(line.level as string);
    expect(typeof line.msg).toBe("string");
    expect(Date.parse(line.time as string)).toBeGreaterThan(0);
  }
  const refusal = lines.find((l) => l.code === "E_NOT_LOGGED_IN")!;
  expect(refusal).toMatchObject({ level: "debug", op: "send" });
  expect(refusal.req).toBeGreaterThan(0);
  expect(lines.find((l) => String(l.msg).includes("registered with"))).toMatchObject({ addr });
  expect(server.stderr.join("")).toBe("");
});

test("--log-format pretty writes a line a person reads: time, level, role and server, text", async () => {
  const server = serve("--log-format", "pretty");
  const line = (await server.waitForLine(/^\d\d:\d\d:\d\d\.\d{3} INFO  server\[[0-9a-f]{8}\] server \S+ listening on \S+, registered with/))[0];
  expect(line).not.toContain("{");
});

test("an unknown log format is refused with a sentence", async () => {
  const server = spawnRole(["serve", "0", "--database-url", cluster.url, "--log-format", "xml"]);
  expect(await server.proc.exited).toBe(1);
  expect(server.stderr.join("\n")).toContain("--log-format takes json or pretty");
});

test("the balancer logs JSON lines too, with its role", async () => {
  const balancer = spawnRole(["balance", "--port", "0", "--database-url", cluster.url, "--log-format", "json"]);
  started.push(balancer);
  const at = (await balancer.waitForLine(/balancer listening on (\S+) /))[1]!;
  const server = spawnRole(["serve", "0", "--balancer", at, "--database-url", cluster.url]);
  started.push(server);
  await server.waitForLine(/listening on/);
  await balancer.waitForLine(/"msg":"server \S+ at \S+ registered/);
  expect(balancer.json().every((l) => l.role === "balancer" && l.pid === balancer.proc.pid)).toBe(true);
});
