// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AutomationCompatibleInterface} from
    "@chainlink/contracts/src/v0.8/automation/interfaces/AutomationCompatibleInterface.sol";
import {IMarginEngine} from "./IMarginEngine.sol";

/// @title IRebalancer
/// @notice Permissionless rebalancing of opted-in accounts (README "Rebalancing"), built into the MarginEngine (same
///         address): the plan is computed from the one valuation the rebalance applies it on.
/// @dev Units: healths and ratios WAD (1e18 = 1.0); USD values WAD. Policy: `IMarginEngine.RebalancePolicy`.
///      Which account belongs to whom: health < 1 is the liquidator's (`Liquidatable`) unless the reserve can
///      rescue it to the liquidation target (then the rescue comes first); trigger <= health <=
///      release is left alone, 1 <= health < trigger is rescued, health > release releases excess margin.
interface IRebalancer is AutomationCompatibleInterface {
    /// @notice Why an account can or cannot be rebalanced now.
    enum Status {
        Ready, // a plan exists and the engine will accept it
        NotOptedIn, // the account has no policy
        Cooldown, // the policy's cooldown since the last rebalance has not passed (or it was this block)
        InBand, // trigger <= health <= release (or release is off / not allowed)
        Liquidatable, // health < 1: only `liquidate` acts
        OracleUnhealthy, // a price the account needs is invalid
        NoAction // outside the band but nothing useful is allowed (empty reserve and no REDUCE, or
            // the improvement would not cover the keeper fee)
    }

    /// @notice Keeper fee: min(policy.maxFeeUsd, baseFeeUsd + gasUnits × block.basefee × gas-asset price).
    /// @param baseFeeUsd Flat part of the fee, WAD USD.
    /// @param gasUnits Gas a rebalance is paid for (the fee uses `block.basefee`, never `tx.gasprice`, so
    ///        a keeper cannot raise its own fee by bidding a high gas price).
    struct FeeParams {
        uint128 baseFeeUsd;
        uint32 gasUnits;
    }

    error NothingToRebalance();
    error Liquidatable(uint256 accountId, uint256 health);
    error NotOptedIn(uint256 accountId);
    /// @dev Same signature as IMarginEngine's: a rebalance reverts with it naming the first invalid market oracle
    ///      of the account.
    error OracleUnhealthy(address asset);
    error FeeParamsOutOfBounds(uint256 baseFeeUsd, uint256 gasUnits);
    /// @dev OpenZeppelin Ownable's, raised by the owner-only setters (the engine's owner).
    error OwnableUnauthorizedAccount(address account);
    error UpkeepSizeOutOfBounds(uint256 size, uint256 max);

    /// @notice `action` is the engine's bitmask (TOP_UP 1, REDUCE 2, RELEASE 4). Each amount is WAD USD and
    ///         reported on its own: `toppedUpUsd` collateral value moved reserve → margin (after haircut),
    ///         `reducedNotionalUsd` notional closed by the REDUCE (rounded up), `releasedUsd` collateral value
    ///         moved margin → reserve (after haircut); `feeUsd` was credited to `keeper` from the account
    ///         (`IMarginEngine.claimKeeperRewards`).
    event Rebalanced(
        uint256 indexed accountId,
        uint8 action,
        uint256 healthBefore,
        uint256 healthAfter,
        uint256 toppedUpUsd,
        uint256 reducedNotionalUsd,
        uint256 releasedUsd,
        uint256 feeUsd,
        address indexed keeper
    );
    /// @notice `rebalanceBatch` / `performUpkeep` skipped the account.
    event RebalanceSkipped(uint256 indexed accountId, Status reason);
    event FeeParamsSet(FeeParams params);
    event UpkeepSizeSet(uint256 size);
    event UpkeepFeeRecipientSet(address recipient);

    /// @notice Permissionless. Plans on current prices — top up from reserve in the policy's asset order,
    ///         then if still short and allowed reduce every position by the least fraction that restores
    ///         target; or release excess margin down to target, never below IM — on one valuation at poked
    ///         prices, and applies it, crediting the caller the keeper fee from the account (claimable).
    ///         Reverts `NotOptedIn`, `NothingToRebalance` (cooldown — at least one block between two
    ///         rebalances of an account, so a keeper losing a race pays two storage reads —, inside the band,
    ///         or nothing useful allowed), `Liquidatable` (health < 1 and no rescue),
    ///         `OracleUnhealthy(asset)` (a market oracle of the account's positions is invalid).
    /// @return action The action applied; @return feeUsd The fee paid to the caller.
    function rebalance(uint256 accountId) external returns (uint8 action, uint256 feeUsd);

    /// @notice Rebalances every eligible account of `accountIds`, skipping (with `RebalanceSkipped`) the
    ///         rest without reverting (an account whose market oracle is invalid is skipped as `OracleUnhealthy`).
    ///         Each oracle is read from its feed once per transaction. Fees are credited to the caller.
    function rebalanceBatch(uint256[] calldata accountIds) external returns (uint256 rebalanced);

    /// @notice The same calculation as `rebalance` on current state: whether a rebalance would act, why not,
    ///         and the plan it would send. The fee uses `block.basefee`, which an `eth_call` without a gas
    ///         price sees as 0 (Geth and Hardhat): such a simulation plans with the flat fee only.
    function needsRebalance(uint256 accountId)
        external
        view
        returns (bool needed, Status status, IMarginEngine.RebalancePlan memory plan);

    /// @notice Scans account ids [start, start + count) (checkData = abi.encode(start, count); empty = every account, at
    ///         most MAX_UPKEEP_SCAN) and returns up to `upkeepSize` that need a rebalance (performData =
    ///         abi.encode(uint256[] ids)), spending at most UPKEEP_CHECK_GAS_BUDGET. A view: it changes nothing.
    function checkUpkeep(bytes calldata checkData)
        external
        view
        override
        returns (bool upkeepNeeded, bytes memory performData);

    /// @notice Owner only: keeper fee parameters (bounds: baseFeeUsd <= MAX_REBALANCE_FEE,
    ///         gasUnits <= MAX_REBALANCE_GAS_UNITS).
    function setFeeParams(FeeParams calldata params) external;
    /// @notice Owner only: most accounts one `checkUpkeep` returns (1..MAX_UPKEEP_SIZE).
    function setUpkeepSize(uint256 size) external;
    /// @notice Owner only: who is credited the fees of `performUpkeep` (Chainlink calls it through a forwarder
    ///         that cannot claim); address(0) credits the caller.
    function setUpkeepFeeRecipient(address recipient) external;
    function upkeepFeeRecipient() external view returns (address);

    /// @notice Asset whose USD price converts gas (WETH on Ethereum and its rollups).
    function gasAsset() external view returns (address);
    function feeParams() external view returns (FeeParams memory);
    function upkeepSize() external view returns (uint256);
    /// @notice The keeper fee a rebalance of an account with `maxFeeUsd` would pay now, WAD USD.
    function keeperFee(uint256 maxFeeUsd) external view returns (uint256);
}
