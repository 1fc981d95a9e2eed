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

    /// @notice Pokes, moves the feed to a new round, and pokes again, all in one transaction: shows that
    ///         the router serves the price it accepted earlier in the transaction.
    function pokeMovePoke(MockAggregator feed, IOracleRouter router, address asset, int256 answer)
        external
        returns (uint256 first, uint256 second, uint256 viewed)
    {
        (, first) = router.poke(asset);
        (uint80 roundId,,,,) = feed.latestRoundData();
        feed.setRound(roundId + 1, answer, block.timestamp, block.timestamp);
        (, second) = router.poke(asset);
        (, viewed) = router.tryPrice(asset);
    }

    /// @notice What one `pokeMarket` returned.
    struct MarketPoke {
        bool ok;
        uint256 price;
        uint256 target;
        uint256 maintenance;
    }

    /// @notice `pokeMarket`, then `volatilities`, then `pokeMarket` again (served from the transaction's cache), all in
    ///         one transaction: the first call must return what the view reads right after it, and the second the same.
    function pokeMarketTwice(IOracleRouter router, address asset)
        external
        returns (MarketPoke memory first, uint256 viewTarget, uint256 viewMaintenance, MarketPoke memory second)
    {
        (first.ok, first.price, first.target, first.maintenance) = router.pokeMarket(asset);
        (viewTarget, viewMaintenance) = router.volatilities(asset);
        (second.ok, second.price, second.target, second.maintenance) = router.pokeMarket(asset);
    }
}
