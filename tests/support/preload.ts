/**
 * bunfig.toml [test] preload. A top-level afterAll here runs once, after every
 * test file: the only hook bun test reliably runs at the end (it fires no
 * process "exit" event), so the test PostgreSQL is released here. Every link
 * of the test process trusts the test cluster CA (tests/support/tls.ts).
 */
import { afterAll } from "bun:test";
import { releaseTestServer } from "./pg";
import { trustTestCa } from "./tls";

trustTestCa();
afterAll(releaseTestServer);
