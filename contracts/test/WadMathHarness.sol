// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {WadMath} from "../libraries/WadMath.sol";

/// @dev Review harness (claim 4 of the WadMath fast path): WadMath's x·y/d next to OpenZeppelin's Math.mulDiv, and
///      `outcome` to compare either the return value or the exact revert data of both through a staticcall.
contract WadMathHarness {
    function fastDown(uint256 x, uint256 y, uint256 d) external pure returns (uint256) {
        return WadMath.mulDivDown(x, y, d);
    }

    function fastUp(uint256 x, uint256 y, uint256 d) external pure returns (uint256) {
        return WadMath.mulDivUp(x, y, d);
    }

    function ozDown(uint256 x, uint256 y, uint256 d) external pure returns (uint256) {
        return Math.mulDiv(x, y, d);
    }

    function ozUp(uint256 x, uint256 y, uint256 d) external pure returns (uint256) {
        return Math.mulDiv(x, y, d, Math.Rounding.Ceil);
    }

    function fastFloor(int256 x, uint256 y, uint256 d) external pure returns (int256) {
        return WadMath.mulDivFloor(x, y, d);
    }

    function fastCeil(int256 x, uint256 y, uint256 d) external pure returns (int256) {
        return WadMath.mulDivCeil(x, y, d);
    }

    /// @dev mulDivFloor / mulDivCeil as they were before 5272ce2 (OpenZeppelin only).
    function ozFloor(int256 x, uint256 y, uint256 d) external pure returns (int256) {
        if (x >= 0) return int256(Math.mulDiv(uint256(x), y, d));
        return -int256(Math.mulDiv(uint256(-x), y, d, Math.Rounding.Ceil));
    }

    function ozCeil(int256 x, uint256 y, uint256 d) external pure returns (int256) {
        if (x >= 0) return int256(Math.mulDiv(uint256(x), y, d, Math.Rounding.Ceil));
        return -int256(Math.mulDiv(uint256(-x), y, d));
    }

    function outcome(bytes calldata data) external view returns (bool ok, bytes memory ret) {
        (ok, ret) = address(this).staticcall(data);
    }
}
