// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test double: an 18-decimal ERC-20 that, when armed, calls `reentryTarget` with `callData` from
///         inside every transfer and bubbles up any revert. Used to show that the vault's user
///         actions cannot be re-entered from a token hook. Open minting.
contract ReentrantToken is ERC20 {
    address public reentryTarget;
    bytes public callData;

    constructor() ERC20("Reentrant", "REENT") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Arms the hook; an empty `callData_` disarms it.
    function setReentry(address target_, bytes calldata callData_) external {
        reentryTarget = target_;
        callData = callData_;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (callData.length != 0 && from != address(0) && to != address(0)) {
            // solhint-disable-next-line avoid-low-level-calls
            (bool ok, bytes memory ret) = reentryTarget.call(callData);
            if (!ok) {
                assembly ("memory-safe") {
                    revert(add(ret, 32), mload(ret))
                }
            }
        }
    }
}
