/**
 * `npx ts-node scripts/fork-replica.ts [url] [block]`: seeds the mainnet replica (lib/fork/replica.ts) into the local
 * `hardhat node` at `url` (default http://127.0.0.1:8545), the same as `npx hardhat fork:replica`, without loading
 * Hardhat. A mistake is one line on stderr, exit code 2.
 */
import { ReplicaError, seedReplica } from "../lib/fork/replica";

(async () => {
  const [url = "http://127.0.0.1:8545", block] = process.argv.slice(2);
  try {
    const r = await seedReplica(url, (l) => console.log(`  ${l}`), block === undefined ? undefined : Number(block));
    console.log(`${r.already ? "already a replica" : "replica seeded"}: fork ${r.url} at block ${r.block}`);
  } catch (e) {
    if (e instanceof ReplicaError) {
      console.error(`Error: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
})();
