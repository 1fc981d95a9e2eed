// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol";
import {IOracle} from "@morpho-org/morpho-blue/src/interfaces/IOracle.sol";

/// @title ChainlinkMorphoOracle
/// @notice Gas-benchmark double (scripts/bench.ts), not part of Ballast: Morpho Blue's `IOracle` over one
///         Chainlink-style feed, so Morpho's `liquidate` can be measured reading the same kind of feed
///         (the project's MockAggregator) as Ballast's OracleRouter. Like Morpho's own ChainlinkOracle it reads
///         `latestRoundData` and rejects a negative answer, with no staleness check.
/// @dev `price()` = answer × 10^(36 + loanDecimals − collateralDecimals − feedDecimals): the price of one unit of
///      collateral token in units of loan token, scaled by 1e36 (IOracle).
contract ChainlinkMorphoOracle is IOracle {
    error NegativeAnswer(int256 answer);
    error ScaleOutOfRange();

    AggregatorV3Interface public immutable feed;
    uint256 public immutable scaleFactor;

    constructor(AggregatorV3Interface feed_, uint8 collateralDecimals, uint8 loanDecimals) {
        uint256 up = 36 + uint256(loanDecimals);
        uint256 down = uint256(collateralDecimals) + feed_.decimals();
        if (down > up) revert ScaleOutOfRange();
        feed = feed_;
        scaleFactor = 10 ** (up - down);
    }

    /// @inheritdoc IOracle
    function price() external view returns (uint256) {
        (, int256 answer,,,) = feed.latestRoundData();
        if (answer < 0) revert NegativeAnswer(answer);
        return uint256(answer) * scaleFactor;
    }
}
