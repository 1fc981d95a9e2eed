// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test double: an 18-decimal ERC-20 that burns 1 % of every transfer and transferFrom
///         (the recipient receives 99 %). Open minting.
contract FeeOnTransferToken is ERC20 {
    /// @dev Fee in basis points of each transferred amount: 1 %.
    uint256 public constant FEE_BPS = 100;

    constructor() ERC20("Fee On Transfer", "FOT") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @dev Every movement between two non-zero addresses pays the fee; mint and burn do not.
    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = (value * FEE_BPS) / 10_000;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}
