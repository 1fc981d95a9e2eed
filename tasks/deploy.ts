/**
 * `npx hardhat deploy [--network <name>] [--fresh] [--verify]`: deploy/deploy.ts's numbered, idempotent, resumable
 * steps with the network's parameters (deploy/networks.ts); the record goes to deployments/<network>.json (or
 * $BALLAST_DEPLOYMENTS_DIR/<network>.json).
 */
import { task } from "hardhat/config";
import { HardhatPluginError } from "hardhat/plugins";

task("deploy", "Deploys Ballast to the selected network in resumable steps and records deployments/<network>.json")
  .addFlag("fresh", "Ignore the step journal (deployments/<network>.steps.json) and deploy everything again")
  .addFlag("verify", "Verify the contracts on the network's block explorer afterwards (live networks; ETHERSCAN_API_KEY)")
  .setAction(async (args: { fresh: boolean; verify: boolean }, hre) => {
    const { networkParams, NETWORKS } = await import("../deploy/networks");
    const { deployBallast, DeployError } = await import("../deploy/deploy");
    const network = hre.network.name;
    if (!NETWORKS[network]) {
      throw new HardhatPluginError("ballast", `no deployment parameters for network "${network}": use one of ${Object.keys(NETWORKS).join(", ")}`);
    }
    const params = networkParams(network);
    const signers = await hre.ethers.getSigners();
    if (signers.length === 0) {
      throw new HardhatPluginError("ballast", `no deployer account for "${network}": set DEPLOYER_PRIVATE_KEY in .env (see .env.example)`);
    }
    const dir = process.env.BALLAST_DEPLOYMENTS_DIR || undefined;
    console.log(`deploying Ballast to ${network} (chain ${params.chainId}) from ${signers[0].address}`);
    try {
      const rec = await deployBallast(signers[0], network, params, { dir, fresh: args.fresh, log: (l) => console.log(`  ${l}`) });
      console.log(`engine ${rec.engine}, oracle ${rec.oracle}, pool ${rec.pool}; markets ${Object.entries(rec.markets).map(([s, m]) => `${s} #${m.id}`).join(", ")}`);
      if (args.verify) {
        if (params.local) {
          console.log("verification skipped: a local network has no block explorer");
        } else {
          const { verifyDeployment } = await import("../deploy/verify");
          await verifyDeployment(hre, rec, params, (l) => console.log(`  ${l}`));
        }
      }
    } catch (e) {
      if (e instanceof DeployError) throw new HardhatPluginError("ballast", e.message);
      const msg = (e as Error).message ?? String(e);
      // An RPC or signer problem a user can fix: one line, not a stack.
      if (/could not detect network|ECONNREFUSED|fetch failed|insufficient funds/i.test(msg)) {
        throw new HardhatPluginError("ballast", `deploy to ${network} failed: ${msg.split("\n")[0]} (check the RPC URL and the deployer's balance; rerun to resume)`);
      }
      throw e;
    }
  });
