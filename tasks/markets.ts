/** markets:list and oracle:push (local networks: a new round of a MockAggregator feed). */

import { ballastTask, need, action, connect, fail, parse, requireLocal, say, send, table, usd, type Ctx } from "../lib/tasks";
import { formatFixed } from "../lib/format";
import { formatUnits, parsePositive } from "../lib/units";

ballastTask("markets:list", "Lists the deployment's markets: price, volatilities, open interest, caps and fees; and the pool")
  .setAction(
    action(async (_args: unknown, hre) => {
      const ctx: Ctx = await connect(hre);
      const { engine, oracle, pool } = ctx.b;
      const rows = [["market", "id", "asset", "price", "σ", "σ_mm", "long OI", "short OI", "OI cap USD", "fee bps"]];
      const out = [];
      for (const m of ctx.markets.values()) {
        const [ok, price] = await oracle.tryPrice(m.asset.address);
        const [vol, volMm] = await oracle.volatilities(m.asset.address);
        const st = await engine.marketState(m.id);
        const p = await engine.marketParams(m.id);
        rows.push([m.symbol, String(m.id), m.asset.symbol, ok ? usd(price) : "no price", pct(vol), pct(volMm),
          formatUnits(st.longOI, 18), formatUnits(st.shortOI, 18), usd(p.oiCapUsd), formatUnits(p.feeRate * 10_000n, 18)]);
        out.push({ symbol: m.symbol, id: m.id, price: ok ? price : undefined, longOI: st.longOI, shortOI: st.shortOI });
      }
      const usdc = [...ctx.assets.values()].find((a) => a.address.toLowerCase() === ctx.rec.settlementAsset.toLowerCase())!;
      const f = (v: bigint) => formatUnits(v, usdc.decimals);
      say(table(rows));
      say(`pool: capital ${f(await pool.capital())} ${usdc.symbol}, free ${f(await pool.freeAssets())} ${usdc.symbol}, ` +
        `insurance ${f(await pool.insuranceBalance())} ${usdc.symbol}; order fee ${f(await engine.orderFee())} ${usdc.symbol}`);
      return out;
    }),
  );

const pct = (wad: bigint) => `${formatFixed(wad * 100n, 18, 1)} %`;

ballastTask("oracle:push", "Local networks only: publishes a new round of an asset's mock feed at a price")
  .addOptionalParam("asset", "asset (WETH, WBTC) or market (ETH, BTC) symbol (required)")
  .addOptionalParam("price", 'USD price, e.g. "1850" (required)')
  .addOptionalParam("from", "signer index or address", "0")
  .setAction(
    action(async (args: { asset: string; price: string; from: string }, hre) => {
      await requireLocal(hre, "oracle:push");
      const ctx = await connect(hre, args.from);
      const key = need(args.asset, "--asset", "WETH").toUpperCase();
      const symbol =
        Object.keys(ctx.rec.feeds).find((s) => s.toUpperCase() === key) ??
        [...ctx.markets.values()].find((m) => m.symbol.toUpperCase() === key)?.asset.symbol;
      const feedAddress = symbol === undefined ? undefined : ctx.rec.feeds[symbol];
      if (!symbol || !feedAddress) fail(`no feed for "${args.asset}": use one of ${Object.keys(ctx.rec.feeds).join(", ")}`);
      const { MockAggregator__factory } = await import("../typechain-types");
      const feed = MockAggregator__factory.connect(feedAddress, ctx.signer);
      const decimals = Number(await feed.decimals());
      const answer = parse(() => parsePositive(need(args.price, "--price", "1850"), decimals, "--price"));
      await send(ctx, () => feed.setAnswer(answer));
      const [roundId, , , updatedAt] = await feed.latestRoundData();
      say(`${symbol} feed: round ${roundId} at ${formatUnits(answer, decimals)} USD (updatedAt ${updatedAt})`);
      return { roundId, answer, updatedAt };
    }),
  );
