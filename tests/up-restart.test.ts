/**
 * `chatterbox up` keeps its chat servers running: one killed with SIGKILL is
 * started again by up, and a client that signed up before the crash logs in
 * and sends through it afterwards. Ctrl-C (SIGTERM) still stops everything,
 * and a server that up was asked to stop is not started again. Its embedded
 * PostgreSQL is kept the same way: a postmaster killed with SIGKILL is started
 * again on its port, and what was sent before the kill is still there.
 */
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PASSWORD, ROOT, waitFor } from "./support/cluster";
import { alive, spawnRole } from "./support/roles";

const work = mkdtempSync(join(tmpdir(), "chatterbox-up-restart-"));
// As root, the embedded PostgreSQL runs as the postgres user, who must be able to enter it.
chmodSync(work, 0o755);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The chat servers up runs (its other child is the embedded PostgreSQL). */
function serversOf(pid: number): number[] {
  return Bun.spawnSync(["pgrep", "-P", String(pid), "-f", "cli.ts serve"]).stdout.toString().split("\n").filter(Boolean).map(Number);
}

/** A client command in its own home, as a person runs it (the cluster CA pinned on first use). */
async function client(home: string, balancer: string, ...args: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "cli.ts"), ...args, "--balancer", balancer], {
    env: { ...process.env, CHATTERBOX_HOME: home, CHATTERBOX_PASSWORD: PASSWORD },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text()];
  return { code: await proc.exited, out: out + err };
}

test("a chat server killed with SIGKILL is started again by up, and clients log in through it", async () => {
  const up = spawnRole(["up", "--data", join(work, "data"), "--port", "0", "--servers", "1", "--log-format", "json"]);
  try {
    const [, balancer] = await up.waitForLine(/balancer\s+(127\.0\.0\.1:\d+)/, 60_000);
    await up.waitForLine(/ChatterBox is up\./, 60_000);
    const [alice, bob] = [join(work, "alice"), join(work, "bob")];
    for (const h of [alice, bob]) mkdirSync(h);
    expect((await client(alice, balancer!, "signup", "--user", "alice")).code).toBe(0);
    expect((await client(bob, balancer!, "signup", "--user", "bob")).code).toBe(0);

    const [first] = serversOf(up.proc.pid);
    expect(first).toBeDefined();
    process.kill(first!, "SIGKILL");
    await up.waitForLine(/chat server 1 \(port any\) was killed by SIGKILL; starting it again/, 15_000);
    await up.waitForLine(/chat server 1 \(port any\) started again/, 15_000);
    const [second] = serversOf(up.proc.pid);
    expect(second).toBeDefined();
    expect(second).not.toBe(first);

    // The only server was the one killed: this goes through the one up started again.
    const sent = await client(alice, balancer!, "send", "--user", "alice", "--to", "bob", "after the crash");
    expect(sent.code).toBe(0);
    const inbox = await client(bob, balancer!, "inbox", "--user", "bob", "--json");
    expect(inbox.code).toBe(0);
    expect(inbox.out).toContain("after the crash");

    expect(await up.stop("SIGTERM")).toBe(0);
    await waitFor(() => !alive(second!), "the server up started again to stop with it", 15_000);
    // Asked to stop, it stays stopped.
    await Bun.sleep(1_500);
    expect(up.stdout.filter((l) => l.includes("started again"))).toHaveLength(1);
  } finally {
    if (up.proc.exitCode === null) await up.stop("SIGKILL");
  }
}, 120_000);

test("the embedded PostgreSQL killed with SIGKILL is started again by up on its port, and nothing sent before is lost", async () => {
  const data = join(work, "data-pg");
  const up = spawnRole(["up", "--data", data, "--port", "0", "--servers", "1", "--log-format", "json"]);
  try {
    const [, balancer] = await up.waitForLine(/balancer\s+(127\.0\.0\.1:\d+)/, 60_000);
    const [, port] = await up.waitForLine(/embedded PostgreSQL in .*, port (\d+)/, 60_000);
    await up.waitForLine(/ChatterBox is up\./, 60_000);
    const [alice, bob] = [join(work, "pg-alice"), join(work, "pg-bob")];
    for (const h of [alice, bob]) mkdirSync(h);
    expect((await client(alice, balancer!, "signup", "--user", "alice")).code).toBe(0);
    expect((await client(bob, balancer!, "signup", "--user", "bob")).code).toBe(0);
    expect((await client(alice, balancer!, "send", "--user", "alice", "--to", "bob", "before the kill")).code).toBe(0);

    // postmaster.pid's first line is the postmaster's pid.
    const postmaster = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
    expect(alive(postmaster)).toBe(true);
    process.kill(postmaster, "SIGKILL");
    await up.waitForLine(/embedded PostgreSQL \(pid \d+\) exited \(SIGKILL\); starting it again/, 15_000);
    const [, again] = await up.waitForLine(/embedded PostgreSQL started again \(pid (\d+), port (\d+)\)/, 60_000);
    expect(Number(again)).not.toBe(postmaster);
    expect(up.stdout.find((l) => l.includes("started again (pid"))).toContain(`port ${port})`);

    // The servers kept their URL: the chat goes on, and the message from before the kill is there.
    // (A send that meets the gap is refused as unavailable, which the client reports; it is not accepted.)
    let sent = await client(alice, balancer!, "send", "--user", "alice", "--to", "bob", "after the kill");
    for (let tries = 1; sent.code !== 0 && tries < 10; tries++) {
      await Bun.sleep(1_000);
      sent = await client(alice, balancer!, "send", "--user", "alice", "--to", "bob", "after the kill");
    }
    expect(sent.code).toBe(0);
    const inbox = await client(bob, balancer!, "inbox", "--user", "bob", "--json");
    expect(inbox.code).toBe(0);
    expect(inbox.out).toContain("before the kill");
    expect(inbox.out).toContain("after the kill");

    expect(await up.stop("SIGTERM")).toBe(0);
    expect(alive(Number(again))).toBe(false);
  } finally {
    if (up.proc.exitCode === null) await up.stop("SIGKILL");
  }
}, 180_000);
