/**
 * Every Hardhat task of Ballast (`npx hardhat help` lists them). Task files import TypeChain types with `import type`
 * only and load factories inside their actions: this file is loaded by hardhat.config.ts before anything is compiled.
 */
import "./deploy";
import "./keeper";
import "./account";
import "./collateral";
import "./position";
import "./policy";
import "./keeping";
import "./lp";
import "./markets";
import "./sim";
import "./fork";
