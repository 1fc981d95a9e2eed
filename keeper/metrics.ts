/** Prometheus metrics (prom-client, a registry per keeper) and the `/metrics` + `/healthz` HTTP endpoints. */
import http from "node:http";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";

export class Metrics {
  readonly registry = new Registry();
  readonly lastBlock = new Gauge({ name: "keeper_last_block", help: "Last block processed", registers: [this.registry] });
  readonly lastBlockAt = new Gauge({ name: "keeper_last_block_timestamp_seconds", help: "Wall time a new block was last processed", registers: [this.registry] });
  readonly accounts = new Gauge({ name: "keeper_accounts", help: "Accounts in the registry", registers: [this.registry] });
  readonly pendingOrders = new Gauge({ name: "keeper_pending_orders", help: "Pending orders known", registers: [this.registry] });
  readonly cycles = new Counter({ name: "keeper_cycles_total", help: "Cycles run", registers: [this.registry] });
  readonly actions = new Counter({ name: "keeper_actions_total", help: "Actions by kind and outcome", labelNames: ["kind", "outcome"], registers: [this.registry] });
  readonly waits = new Gauge({ name: "keeper_waiting_actions", help: "Actions waiting (unprofitable, not ready)", registers: [this.registry] });
  readonly rpcErrors = new Counter({ name: "keeper_rpc_errors_total", help: "RPC errors by endpoint", labelNames: ["endpoint"], registers: [this.registry] });
  readonly reorgs = new Counter({ name: "keeper_reorgs_total", help: "Reorgs detected", registers: [this.registry] });
  readonly mirrorCalls = new Counter({ name: "keeper_mirror_calls_total", help: "BallastLens eth_calls of the health mirror", registers: [this.registry] });
  readonly mirrorReads = new Counter({ name: "keeper_mirror_reads_total", help: "Accounts the health mirror read", registers: [this.registry] });
  /** wall-clock ms of the last new block processed (0 = none yet) */
  private lastNewBlockMs = 0;

  constructor(defaultMetrics = false) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  blockProcessed(block: number, nowMs = Date.now()): void {
    if (block > (this.lastSeen ?? -1)) {
      this.lastSeen = block;
      this.lastNewBlockMs = nowMs;
      this.lastBlock.set(block);
      this.lastBlockAt.set(Math.floor(nowMs / 1000));
    }
  }
  private lastSeen: number | undefined;

  /** Healthy while a new block was processed within `staleSeconds`. */
  healthy(staleSeconds: number, nowMs = Date.now()): boolean {
    return this.lastNewBlockMs !== 0 && nowMs - this.lastNewBlockMs <= staleSeconds * 1000;
  }

  /** Serves /metrics and /healthz on `port` (0 = an ephemeral port). */
  serve(port: number, staleSeconds: number): Promise<http.Server> {
    const server = http.createServer(async (req, res) => {
      if (req.url === "/metrics") {
        res.writeHead(200, { "content-type": this.registry.contentType });
        res.end(await this.registry.metrics());
      } else if (req.url === "/healthz") {
        const ok = this.healthy(staleSeconds);
        res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
        res.end(JSON.stringify({ ok, lastBlock: this.lastSeen ?? null, staleSeconds }));
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    return new Promise((resolve) => server.listen(port, () => resolve(server)));
  }
}
