// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {WadMath} from "./WadMath.sol";

/// @title CloseMath
/// @notice The one formula behind a partial liquidation and a rebalance REDUCE: the least fraction of every
///         position whose close brings an account's health to a target.
library CloseMath {
    using WadMath for uint256;

    uint256 internal constant WAD = 1e18;

    /// @dev Closing a fraction f of every position lowers the size-proportional requirement M = MM − R to
    ///      M·(1 − f) (R, the keeper-reward reserve, stays) and costs f·closeCost. Solving
    ///      (E − f·closeCost) ≥ t·(M·(1 − f) + R) for the least f gives
    ///      f = (t·MM − E) / (t·M − closeCost), with t·MM rounded up, t·M rounded down and f rounded up
    ///      (more is closed). `equity` is E with every other cost of the action already taken off.
    ///      Returns 0 when the target already holds, WAD (close everything) when no fraction below 1 does.
    ///      A size term in the rate only lowers M further as size falls, so f is a safe upper bound.
    function leastCloseFraction(uint256 target, uint256 mm, uint256 reserveR, int256 equity, uint256 closeCost)
        internal
        pure
        returns (uint256)
    {
        int256 num = int256(mm.wMulUp(target)) - equity;
        if (num <= 0) return 0;
        int256 den = int256((mm - reserveR).wMulDown(target)) - int256(closeCost);
        if (den <= 0 || num >= den) return WAD;
        return uint256(num).wDivUp(uint256(den));
    }
}
