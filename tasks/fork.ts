/**
 * `npx hardhat fork:replica --url http://127.0.0.1:<port> [--block N]`: seeds the mainnet replica (lib/fork/replica.ts)
 * into a running local `hardhat node` started with BALLAST_NODE_CHAIN_ID=1 and BALLAST_NODE_INITIAL_DATE (README
 * "Forked-mainnet tests"), and prints what it placed and the block to fork. A mistake (a non-local URL, a node with
 * another chain id or clock) is one line.
 */
import { types } from "hardhat/config";

import { action, ballastTask, fail } from "../lib/tasks";

ballastTask("fork:replica", "Seeds a local mainnet replica (chain id 1) into a running `hardhat node` and prints what it placed")
  .addOptionalParam("url", "The node's JSON-RPC URL (a loopback address)", "http://127.0.0.1:8545")
  .addOptionalParam("block", "The block the seeded state is carried to (the block to fork); default FORK_BLOCK of lib/fork/mainnet.ts", undefined, types.int)
  .setAction(
    action(async (args: { url: string; block?: number }) => {
      const { seedReplica, ReplicaError } = await import("../lib/fork/replica");
      try {
        const r = await seedReplica(args.url, (l) => console.log(`  ${l}`), args.block);
        const when = new Date(r.timestamp * 1000).toISOString();
        console.log(
          `${r.already ? "already a replica" : "replica seeded"}: fork ${r.url} at block ${r.block} (${when}); ` +
            `ETH/USD round ${r.eth.roundId} = ${r.eth.answer} e-8, BTC/USD round ${r.btc.roundId} = ${r.btc.answer} e-8`,
        );
      } catch (e) {
        if (e instanceof ReplicaError) fail(e.message);
        throw e;
      }
    }),
  );
