// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IPoolEngine
/// @notice What the LiquidityPool asks of the margin engine.
interface IPoolEngine {
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
