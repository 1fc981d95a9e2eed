/**
 * Several RPC endpoints with fail-over: each is asked for its head; one more than `maxLagBlocks` behind the best is
 * not trusted; one that fails is backed off exponentially. Every read and send of the keeper goes through
 * `RpcPool.use`, which tries the trusted endpoints in configuration order and moves on when one fails with an RPC
 * error (a revert is an answer, not a failure: it is rethrown at once).
 */
import { JsonRpcApiProvider, JsonRpcProvider, Network, isError, type JsonRpcPayload, type JsonRpcResult, type JsonRpcError } from "ethers";
import type { Logger } from "./log";
import type { Metrics } from "./metrics";

export interface Eip1193 {
  request(args: { method: string; params?: unknown[] | Record<string, unknown> }): Promise<unknown>;
}

/** An ethers provider over an EIP-1193 `request` (the in-process Hardhat network, test fakes): no caching, no batching. */
export class Eip1193Provider extends JsonRpcApiProvider {
  constructor(private readonly eip: Eip1193, chainId: number) {
    const network = Network.from(chainId);
    super(network, { staticNetwork: network, batchMaxCount: 1, cacheTimeout: -1 });
  }

  async _send(payload: JsonRpcPayload | JsonRpcPayload[]): Promise<(JsonRpcResult | JsonRpcError)[]> {
    const out: (JsonRpcResult | JsonRpcError)[] = [];
    for (const p of Array.isArray(payload) ? payload : [payload]) {
      try {
        out.push({ id: p.id, result: await this.eip.request({ method: p.method, params: p.params as unknown[] }) });
      } catch (e) {
        const err = e as { code?: number; message?: string; data?: unknown };
        out.push({ id: p.id, error: { code: typeof err.code === "number" ? err.code : -32603, message: err.message ?? String(e), data: err.data } });
      }
    }
    return out;
  }
}

/** An HTTP endpoint: static network (no chain-id probing), no caching, no batching. */
export function httpProvider(url: string, chainId: number): JsonRpcApiProvider {
  const network = Network.from(chainId);
  return new JsonRpcProvider(url, network, { staticNetwork: network, batchMaxCount: 1, cacheTimeout: -1 });
}

export interface Endpoint {
  /** for logs and metrics (the URL without credentials) */
  name: string;
  provider: JsonRpcApiProvider;
}

interface State {
  head: number | undefined;
  failures: number;
  retryAt: number;
  lastError?: string;
}

export class NoTrustedRpcError extends Error {}

/** A revert (the node answered): never a reason to fail over. */
export function isRevert(e: unknown): boolean {
  return isError(e, "CALL_EXCEPTION");
}

/** Node answers about a transaction that are not endpoint failures either. */
export function isTxRejection(e: unknown): boolean {
  if (isError(e, "NONCE_EXPIRED") || isError(e, "REPLACEMENT_UNDERPRICED") || isError(e, "INSUFFICIENT_FUNDS")) return true;
  const m = String((e as Error)?.message ?? "").toLowerCase();
  return /nonce too low|already known|replacement (transaction )?underpriced|insufficient funds|nonce has already been used/.test(m);
}

export class RpcPool {
  private readonly state: State[];
  best = 0;

  constructor(
    readonly endpoints: Endpoint[],
    private readonly opts: { maxLagBlocks: number; log: Logger; metrics?: Metrics; backoffBaseMs?: number; backoffMaxMs?: number; now?: () => number },
  ) {
    if (endpoints.length === 0) throw new Error("no RPC endpoint");
    this.state = endpoints.map(() => ({ head: undefined, failures: 0, retryAt: 0 }));
  }

  private now() {
    return this.opts.now?.() ?? Date.now();
  }

  private fail(i: number, e: unknown): void {
    const s = this.state[i];
    s.failures++;
    const base = this.opts.backoffBaseMs ?? 500;
    s.retryAt = this.now() + Math.min(this.opts.backoffMaxMs ?? 30_000, base * 2 ** (s.failures - 1));
    s.lastError = String((e as Error)?.message ?? e).split("\n")[0].slice(0, 200);
    s.head = undefined;
    this.opts.metrics?.rpcErrors.inc({ endpoint: this.endpoints[i].name });
    this.opts.log.warn({ endpoint: this.endpoints[i].name, failures: s.failures, retryInMs: s.retryAt - this.now(), error: s.lastError }, "rpc endpoint failed; backing off");
  }

  private ok(i: number): void {
    const s = this.state[i];
    if (s.failures > 0) this.opts.log.info({ endpoint: this.endpoints[i].name }, "rpc endpoint recovered");
    s.failures = 0;
    s.retryAt = 0;
  }

  /** Asks every endpoint not backed off for its head; returns the best head. Throws NoTrustedRpcError if none answers. */
  async refresh(): Promise<number> {
    const now = this.now();
    await Promise.all(
      this.endpoints.map(async (ep, i) => {
        const s = this.state[i];
        if (s.retryAt > now) return;
        try {
          s.head = await ep.provider.getBlockNumber();
          this.ok(i);
        } catch (e) {
          this.fail(i, e);
        }
      }),
    );
    const heads = this.state.map((s) => s.head).filter((h): h is number => h !== undefined);
    if (heads.length === 0) throw new NoTrustedRpcError(`no RPC endpoint answers (${this.endpoints.map((e) => e.name).join(", ")})`);
    this.best = Math.max(...heads);
    this.state.forEach((s, i) => {
      if (s.head !== undefined && s.head < this.best - this.opts.maxLagBlocks) {
        this.opts.log.warn({ endpoint: this.endpoints[i].name, head: s.head, best: this.best, maxLagBlocks: this.opts.maxLagBlocks }, "rpc endpoint lags: not trusted");
      }
    });
    return this.best;
  }

  /** Endpoints trusted now, in configuration order: answered the last refresh and within maxLagBlocks of the best. */
  trusted(): number[] {
    const now = this.now();
    return this.state
      .map((s, i) => ({ s, i }))
      .filter(({ s }) => s.head !== undefined && s.retryAt <= now && s.head >= this.best - this.opts.maxLagBlocks)
      .map(({ i }) => i);
  }

  /** Name of the endpoint `use` tries first. */
  current(): string | undefined {
    const t = this.trusted();
    return t.length ? this.endpoints[t[0]].name : undefined;
  }

  /**
   * Runs `fn` on the first trusted endpoint; on an RPC failure backs that endpoint off and tries the next. Reverts
   * and transaction rejections are answers: rethrown at once.
   */
  async use<T>(fn: (ep: Endpoint, index: number) => Promise<T>): Promise<T> {
    let last: unknown;
    for (const i of this.trusted()) {
      try {
        const out = await fn(this.endpoints[i], i);
        this.ok(i);
        return out;
      } catch (e) {
        if (isRevert(e) || isTxRejection(e)) throw e;
        last = e;
        this.fail(i, e);
      }
    }
    throw new NoTrustedRpcError(`every trusted RPC endpoint failed${last ? `: ${String((last as Error).message ?? last).split("\n")[0]}` : ""}`);
  }
}
