// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "@chainlink/contracts/src/v0.8/shared/interfaces/AggregatorV3Interface.sol";

/// @title MockAggregator
/// @notice Test double of a Chainlink feed: any round, any decimals, the history of every round set (served by
///         `getRoundData`), and a switch that makes both reads revert (a paused or broken feed).
contract MockAggregator is AggregatorV3Interface {
    error FeedReverted();

    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
    }

    uint8 public immutable override decimals;
    uint80 internal _roundId;
    int256 internal _answer;
    uint256 internal _startedAt;
    uint256 internal _updatedAt;
    bool public reverting;
    /// @dev Every round set, by id: `getRoundData` serves history like a real aggregator.
    mapping(uint80 roundId => Round) internal _rounds;

    constructor(uint8 decimals_) {
        decimals = decimals_;
    }

    /// @notice Sets the latest round verbatim (answeredInRound = roundId).
    function setRound(uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt) public {
        _roundId = roundId;
        _answer = answer;
        _startedAt = startedAt;
        _updatedAt = updatedAt;
        _rounds[roundId] = Round(answer, startedAt, updatedAt);
    }

    /// @notice Next round with `answer`, started and updated now.
    function setAnswer(int256 answer) external {
        setRound(_roundId + 1, answer, block.timestamp, block.timestamp);
    }

    function setReverting(bool reverting_) external {
        reverting = reverting_;
    }

    function description() external pure returns (string memory) {
        return "MockAggregator";
    }

    function version() external pure returns (uint256) {
        return 4;
    }

    function getRoundData(uint80 roundId)
        external
        view
        returns (uint80, int256, uint256, uint256, uint80)
    {
        Round memory r = _rounds[roundId];
        if (reverting || r.updatedAt == 0) revert FeedReverted();
        return (roundId, r.answer, r.startedAt, r.updatedAt, roundId);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        if (reverting) revert FeedReverted();
        return (_roundId, _answer, _startedAt, _updatedAt, _roundId);
    }
}
