/**
 * The balancer's Prometheus metrics: the servers it knows, the clients it
 * placed, and its error replies by code. Counts by strategy and code only.
 */
import { Counter, Gauge, Registry } from "prom-client";

export interface BalancerLevels {
  servers(): number;
  /** Summed load (logged-in users) the live servers reported. */
  load(): number;
  connections(): number;
}

export class BalancerMetrics {
  readonly registry = new Registry();
  private readonly placed = new Counter({ name: "chatterbox_balancer_assignments_total", help: "Clients told which server to use", registers: [this.registry] });
  private readonly errors = new Counter({
    name: "chatterbox_errors_total",
    help: "Error replies, by protocol error code",
    labelNames: ["code"],
    registers: [this.registry],
  });

  constructor(levels: BalancerLevels) {
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({ name, help, registers: [this.registry], collect() { this.set(read()); } });
    gauge("chatterbox_balancer_servers", "Live chat servers registered with this balancer", levels.servers);
    gauge("chatterbox_balancer_server_load", "Logged-in users the live servers reported, summed", levels.load);
    gauge("chatterbox_connections", "Open connections to this balancer (servers and asking clients)", levels.connections);
  }

  assigned(): void {
    this.placed.inc();
  }

  refused(code: string): void {
    this.errors.inc({ code });
  }
}
