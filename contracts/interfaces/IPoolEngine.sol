// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IPoolEngine
/// @notice What the LiquidityPool asks of the margin engine, which holds the pool's tokens: LP capital, the
///         insurance fund and the keeper rewards not yet claimed.
interface IPoolEngine {
    /// @notice A pool-only function was called by someone else.
    error NotPool(address caller);

    /// @notice The insurance fund received `amount` from LP capital (a liquidation penalty's share).
    event InsuranceAdded(uint256 amount, uint256 insuranceBalance);
    /// @notice Bad debt written off: `fromInsurance` covered by the insurance fund, `socialised` borne
    ///         by LPs through the share price (settlement-asset units).
    event BadDebtCovered(uint256 indexed accountId, uint256 amount, uint256 fromInsurance, uint256 socialised);
    /// @notice The pool's balance held here changed by a transfer: `amount` in (`inflow`) or out, `insurance` when
    ///         it was a donation to the insurance fund.
    event PoolTransfer(address indexed counterparty, uint256 amount, bool inflow, bool insurance);

    /// @notice Pool only: `amount` of the settlement asset has just been sent to the engine for the pool (from an LP
    ///         or, with `insurance`, a donor to the insurance fund). Reverts `UntrackedBalance` unless the tokens
    ///         are there.
    function poolReceive(address from, uint256 amount, bool insurance) external;
    /// @notice Pool only: sends `amount` of LP capital to `to` (`InsufficientCapital` past it).
    function poolPay(address to, uint256 amount) external;
    /// @notice Every token held here for the pool: LP capital + insurance + unclaimed keeper rewards.
    function poolBalance() external view returns (uint256);
    /// @notice LP capital: the pool's tokens held here less insurance and unclaimed keeper rewards (0 if below).
    function poolCapital() external view returns (uint256);
    /// @notice The insurance fund's balance (settlement-asset units).
    function insuranceBalance() external view returns (uint256);
    /// @notice Pool only: the pool's state changes take the engine's lock (`ReentrancyGuardReentrantCall` when held).
    function enterLock() external;
    function exitLock() external;

    /// @notice The pool's exposure to open positions at current oracle prices, funding included. Never reverts.
    /// @return ok False when a market with open interest has no valid price: the pool cannot be valued, and
    ///         LP deposits and redemptions wait.
    /// @return profitUsd Σ over markets and sides of the side's open profit (a side whose net PnL is a loss
    ///         counts 0): what the pool owes traders. WAD USD, rounded up (a liability).
    /// @return lossUsd Σ over markets and sides of the side's open loss, plus every account's realised debt not
    ///         yet collected (`totalDebtUsd`): what traders owe the pool. WAD USD, rounded up (it only ever raises
    ///         the price a new LP pays).
    /// @return backing Pool assets (settlement-asset units, rounded up) that open interest requires: the pool
    ///         cannot shrink below the capital at which every market's open interest is within
    ///         `oiCapFraction` of it.
    function poolExposure() external view returns (bool ok, uint256 profitUsd, uint256 lossUsd, uint256 backing);
}
