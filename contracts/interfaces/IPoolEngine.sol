// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IPoolEngine
/// @notice What the LiquidityPool asks of the margin engine.
interface IPoolEngine {
    /// @notice Net unrealised PnL of all traders at current oracle prices, funding included, WAD USD.
    ///         Positive = the pool owes traders. Rounded up (against the pool's LPs).
    function openTraderPnl() external view returns (int256);

    /// @notice Pool assets (settlement-asset units) that open interest requires: the pool cannot shrink
    ///         below the level at which every market's open interest is still within its cap.
    function requiredBacking() external view returns (uint256);
}
