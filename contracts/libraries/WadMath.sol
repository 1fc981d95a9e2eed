// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title WadMath
/// @notice 18-decimal fixed-point helpers. The rounding direction is part of every name
///         (`Down` floors, `Up` ceils) so a reader can check at the call site that it favours the protocol.
///         Every x·y/d is exact to the last wei: when the product fits 256 bits (every amount this protocol handles:
///         WAD values below ~1e38 times WAD factors) it is one multiplication and one division; only a product that
///         overflows takes OpenZeppelin's 512-bit `mulDiv`, which returns the same result for the inputs both handle.
///         A zero divisor panics (0x12) on both paths.
library WadMath {
    uint256 internal constant WAD = 1e18;

    function mulDivDown(uint256 x, uint256 y, uint256 d) internal pure returns (uint256) {
        unchecked {
            uint256 p = x * y;
            if (x == 0 || p / x == y) return p / d; // no overflow: exact
        }
        return Math.mulDiv(x, y, d);
    }

    function mulDivUp(uint256 x, uint256 y, uint256 d) internal pure returns (uint256) {
        unchecked {
            uint256 p = x * y;
            if (x == 0 || p / x == y) return p / d + (p % d == 0 ? 0 : 1); // no overflow: exact, then ceil
        }
        return Math.mulDiv(x, y, d, Math.Rounding.Ceil);
    }

    function wMulDown(uint256 x, uint256 y) internal pure returns (uint256) {
        return mulDivDown(x, y, WAD);
    }

    function wMulUp(uint256 x, uint256 y) internal pure returns (uint256) {
        return mulDivUp(x, y, WAD);
    }

    function wDivDown(uint256 x, uint256 y) internal pure returns (uint256) {
        return mulDivDown(x, WAD, y);
    }

    function wDivUp(uint256 x, uint256 y) internal pure returns (uint256) {
        return mulDivUp(x, WAD, y);
    }

    /// @dev Square root of a WAD number, as a WAD: sqrt(x / 1e18) * 1e18 = sqrt(x * 1e18), rounded down.
    function wSqrtDown(uint256 x) internal pure returns (uint256) {
        return Math.sqrt(x * WAD);
    }

    /// @dev x * y / d for a signed x, rounded toward negative infinity (floor): a signed PnL rounded with
    ///      this is never more favourable to the account than the exact value.
    function mulDivFloor(int256 x, uint256 y, uint256 d) internal pure returns (int256) {
        if (x >= 0) return int256(mulDivDown(uint256(x), y, d));
        return -int256(mulDivUp(uint256(-x), y, d));
    }

    /// @dev x * y / d for a signed x, rounded toward positive infinity (ceil).
    function mulDivCeil(int256 x, uint256 y, uint256 d) internal pure returns (int256) {
        if (x >= 0) return int256(mulDivUp(uint256(x), y, d));
        return -int256(mulDivDown(uint256(-x), y, d));
    }

    /// @dev |x| of a signed value.
    function abs(int256 x) internal pure returns (uint256) {
        return x >= 0 ? uint256(x) : uint256(-x);
    }

    /// @dev Converts a token amount with `decimals` to a WAD value at `priceWad` (USD per whole token), rounded down.
    function toValueDown(uint256 amount, uint256 priceWad, uint8 decimals) internal pure returns (uint256) {
        return mulDivDown(amount, priceWad, 10 ** decimals);
    }

    /// @dev Converts a token amount with `decimals` to a WAD value at `priceWad`, rounded up.
    function toValueUp(uint256 amount, uint256 priceWad, uint8 decimals) internal pure returns (uint256) {
        return mulDivUp(amount, priceWad, 10 ** decimals);
    }

    /// @dev Token amount (with `decimals`) worth `valueWad` at `priceWad`, rounded up.
    function toAmountUp(uint256 valueWad, uint256 priceWad, uint8 decimals) internal pure returns (uint256) {
        return mulDivUp(valueWad, 10 ** decimals, priceWad);
    }

    /// @dev Token amount (with `decimals`) worth `valueWad` at `priceWad`, rounded down.
    function toAmountDown(uint256 valueWad, uint256 priceWad, uint8 decimals) internal pure returns (uint256) {
        return mulDivDown(valueWad, 10 ** decimals, priceWad);
    }
}
