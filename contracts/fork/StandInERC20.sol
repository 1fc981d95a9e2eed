// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title StandInERC20
/// @notice FORK REPLICA ONLY (lib/fork/replica.ts): a stand-in for a mainnet token (USDC, WBTC) placed at that
///         token's mainnet address on a local replica of mainnet. It is NOT the token's published bytecode: it is a
///         plain OpenZeppelin ERC-20 with the real token's name, symbol and decimals, and one minter (the replica's
///         seeder) that creates the balances the replica's "holders" hold. It has none of the real token's
///         features (USDC's proxy, blacklist, pause, EIP-3009; WBTC's controller), and its supply is whatever the
///         seeder minted, not the real one.
/// @dev Placed by copying this contract's runtime code and the storage its constructor wrote (name, symbol) to
///      the mainnet address; `decimals` and `minter` are immutables, embedded in the runtime code.
contract StandInERC20 is ERC20 {
    error NotMinter(address caller);

    uint8 private immutable _decimals;
    /// @notice The only account that may mint.
    address public immutable minter;

    constructor(string memory name_, string memory symbol_, uint8 decimals_, address minter_) ERC20(name_, symbol_) {
        _decimals = decimals_;
        minter = minter_;
    }

    function decimals() public view override returns (uint8) {
        return _decimals;
    }

    /// @notice Mints `amount` to `to`; the minter only.
    function mint(address to, uint256 amount) external {
        if (msg.sender != minter) revert NotMinter(msg.sender);
        _mint(to, amount);
    }
}
