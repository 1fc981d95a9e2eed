// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title WadMath
/// @notice 18-decimal fixed-point helpers. The rounding direction is part of every name
///         (`Down` floors, `Up` ceils) so a reader can check at the call site that it favours the protocol.
library WadMath {
    uint256 internal constant WAD = 1e18;

    function mulDivDown(uint256 x, uint256 y, uint256 d) internal pure returns (uint256) {
        return Math.mulDiv(x, y, d);
    }

    function mulDivUp(uint256 x, uint256 y, uint256 d) internal pure returns (uint256) {
        return Math.mulDiv(x, y, d, Math.Rounding.Ceil);
    }

    function wMulDown(uint256 x, uint256 y) internal pure returns (uint256) {
        return Math.mulDiv(x, y, WAD);
    }

    function wMulUp(uint256 x, uint256 y) internal pure returns (uint256) {
        return Math.mulDiv(x, y, WAD, Math.Rounding.Ceil);
    }

    function wDivDown(uint256 x, uint256 y) internal pure returns (uint256) {
        return Math.mulDiv(x, WAD, y);
    }

    function wDivUp(uint256 x, uint256 y) internal pure returns (uint256) {
        return Math.mulDiv(x, WAD, y, Math.Rounding.Ceil);
    }

    /// @dev Square root of a WAD number, as a WAD: sqrt(x / 1e18) * 1e18 = sqrt(x * 1e18), rounded down.
    function wSqrtDown(uint256 x) internal pure returns (uint256) {
        return Math.sqrt(x * WAD);
    }

    /// @dev x * y / d for a signed x, rounded toward negative infinity (floor): a signed PnL rounded with
    ///      this is never more favourable to the account than the exact value.
    function mulDivFloor(int256 x, uint256 y, uint256 d) internal pure returns (int256) {
        if (x >= 0) return int256(Math.mulDiv(uint256(x), y, d));
        return -int256(Math.mulDiv(uint256(-x), y, d, Math.Rounding.Ceil));
    }

    /// @dev x * y / d for a signed x, rounded toward positive infinity (ceil).
    function mulDivCeil(int256 x, uint256 y, uint256 d) internal pure returns (int256) {
        if (x >= 0) return int256(Math.mulDiv(uint256(x), y, d, Math.Rounding.Ceil));
        return -int256(Math.mulDiv(uint256(-x), y, d));
    }

    /// @dev |x| of a signed value.
    function abs(int256 x) internal pure returns (uint256) {
        return x >= 0 ? uint256(x) : uint256(-x);
    }

    /// @dev Converts a token amount with `decimals` to a WAD value at `priceWad` (USD per whole token), rounded down.
    function toValueDown(uint256 amount, uint256 priceWad, uint8 decimals) internal pure returns (uint256) {
        return Math.mulDiv(amount, priceWad, 10 ** decimals);
    }

    /// @dev Converts a token amount with `decimals` to a WAD value at `priceWad`, rounded up.
    function toValueUp(uint256 amount, uint256 priceWad, uint8 decimals) internal pure returns (uint256) {
        return Math.mulDiv(amount, priceWad, 10 ** decimals, Math.Rounding.Ceil);
    }

    /// @dev Token amount (with `decimals`) worth `valueWad` at `priceWad`, rounded up.
    function toAmountUp(uint256 valueWad, uint256 priceWad, uint8 decimals) internal pure returns (uint256) {
        return Math.mulDiv(valueWad, 10 ** decimals, priceWad, Math.Rounding.Ceil);
    }

    /// @dev Token amount (with `decimals`) worth `valueWad` at `priceWad`, rounded down.
    function toAmountDown(uint256 valueWad, uint256 priceWad, uint8 decimals) internal pure returns (uint256) {
        return Math.mulDiv(valueWad, 10 ** decimals, priceWad);
    }
}
