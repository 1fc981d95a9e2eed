// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MockAggregator} from "./MockAggregator.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";

/// @title FeedPusher
/// @notice Test helper: sets a round on a MockAggregator and pokes the router in one transaction,
///         halving the transactions of a history replay.
contract FeedPusher {
    function pushAndPoke(
        MockAggregator feed,
        IOracleRouter router,
        address asset,
        uint80 roundId,
        int256 answer,
        uint256 updatedAt
    ) external returns (bool ok, uint256 priceWad) {
        feed.setRound(roundId, answer, updatedAt, updatedAt);
        return router.poke(asset);
    }
}
