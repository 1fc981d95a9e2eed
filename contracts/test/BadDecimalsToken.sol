// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test double: an ERC-20 reporting 0 decimals, which the vault must refuse to list.
contract ZeroDecimalsToken is ERC20 {
    constructor() ERC20("Zero Decimals", "ZERO") {}

    function decimals() public pure override returns (uint8) {
        return 0;
    }
}

/// @notice Test double: an ERC-20 reporting 24 decimals, more than the vault's WAD math accepts.
contract TwentyFourDecimalsToken is ERC20 {
    constructor() ERC20("Twenty-Four Decimals", "TWFR") {}

    function decimals() public pure override returns (uint8) {
        return 24;
    }
}
