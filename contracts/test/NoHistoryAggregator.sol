// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol";

/// @title NoHistoryAggregator
/// @notice Test double of a feed that serves its latest round but no history: `getRoundData` always reverts
///         (an adapter or an L2 feed that keeps only the latest answer).
contract NoHistoryAggregator is AggregatorV3Interface {
    error NoHistory(uint80 roundId);

    uint8 public immutable override decimals;
    uint80 internal _roundId;
    int256 internal _answer;
    uint256 internal _startedAt;
    uint256 internal _updatedAt;

    constructor(uint8 decimals_) {
        decimals = decimals_;
    }

    /// @notice Sets the latest round verbatim (answeredInRound = roundId); the previous one is forgotten.
    function setRound(uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt) external {
        _roundId = roundId;
        _answer = answer;
        _startedAt = startedAt;
        _updatedAt = updatedAt;
    }

    function description() external pure returns (string memory) {
        return "NoHistoryAggregator";
    }

    function version() external pure returns (uint256) {
        return 4;
    }

    function getRoundData(uint80 roundId) external pure returns (uint80, int256, uint256, uint256, uint80) {
        revert NoHistory(roundId);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        return (_roundId, _answer, _startedAt, _updatedAt, _roundId);
    }
}
