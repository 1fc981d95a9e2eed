// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Constants
/// @notice Protocol-wide constants, with units and the reason for each bound.

/// @dev 1.0 in 18-decimal fixed point: ratios, prices and USD values are WAD.
uint256 constant WAD = 1e18;
/// @dev Basis points in 100 %.
uint256 constant BPS = 10_000;
/// @dev Seconds in a 365-day year, for annualising volatility and funding.
uint256 constant SECONDS_PER_YEAR = 365 days;

/// @dev Collateral tokens the engine may list; bounds the gas of every equity computation.
uint256 constant MAX_ASSETS = 16;
/// @dev Largest token decimals the engine accepts (WAD math assumes <= 18).
uint8 constant MAX_DECIMALS = 18;

/// @dev Highest annualised volatility an asset's cap may be set to: 1000 %.
uint256 constant MAX_VOLATILITY = 10e18;
/// @dev Longest EWMA time constant: 365 days.
uint256 constant MAX_VOL_TAU = 365 days;
/// @dev Longest L2 sequencer grace period: 1 day.
uint256 constant MAX_SEQUENCER_GRACE = 1 days;
/// @dev Longest breaker cooldown: 7 days.
uint256 constant MAX_BREAKER_COOLDOWN = 7 days;
/// @dev Highest `maxPrice` a feed may be given (`OracleRouter.setFeed`), WAD: 2^126 ≈ 8.5e19 USD per unit, so every
///      price the engine reads is below 2^126. A position keeps entryPrice − entryFunding in 128 bits
///      (AccountLogic.PositionSlot, SafeCast at every trade that leaves a position open: a partial close, a
///      liquidation's, a rebalance's REDUCE): with prices below 2^126 that difference fits unless the market's funding
///      index has fallen below −2^126, so no price can block a partial close or a liquidation.
uint256 constant MAX_FEED_PRICE = 2 ** 126;

/// @dev Default EWMA time constant set by `OracleRouter.setFeed` when an asset has no VolParams yet:
///      1 day, in seconds. Long enough to smooth a day of heartbeat/deviation rounds, short enough for
///      margins to react to a regime change within a few days.
uint32 constant DEFAULT_VOL_TAU = 1 days;
/// @dev Default volatility floor, annualised WAD: 10 %. No major collateral trades calmer than this
///      for long, and a floor keeps the volatility margin term from vanishing on a quiet or stuck feed.
uint64 constant DEFAULT_VOL_FLOOR = 0.1e18;
/// @dev Default volatility cap, annualised WAD: 500 %. Above crash-day realised volatility of ETH/BTC,
///      below MAX_VOLATILITY, so a single bad round cannot make margin requirements unbounded.
uint64 constant DEFAULT_VOL_CAP = 5e18;
/// @dev Default volatility sampling grid: 1 hour of the feed's clock. Chainlink's ETH/USD heartbeat is 1 hour, so
///      every interval has a round; finer grids make σ depend on microstructure noise.
uint32 constant DEFAULT_VOL_INTERVAL = 1 hours;
/// @dev Sampling grid bounds: 1 minute .. 1 day.
uint256 constant MIN_VOL_INTERVAL = 1 minutes;
uint256 constant MAX_VOL_INTERVAL = 1 days;
/// @dev Default speed of the maintenance volatility: 20 percentage points of annualised σ per day. With volK 1 and a
///      one-day horizon the maintenance rate then rises by at most 1.05 % of notional a day: a margin call the
///      rebalancer answers from the reserve, never a liquidation in the same round as the price. Chosen from the
///      crash replays (README, Risk model: `npm run risk:table`).
uint64 constant DEFAULT_VOL_MAX_CHANGE = 0.2e18;
/// @dev Speed bounds: 1 .. 1,000 percentage points a day.
uint256 constant MIN_VOL_MAX_CHANGE = 0.01e18;
uint256 constant MAX_VOL_MAX_CHANGE = 10e18;
/// @dev Most feed rounds one poke reads back (getRoundData) to price the volatility samples it owes: at Chainlink
///      ETH/USD's busiest (a few dozen rounds a day) a day of withheld pokes; older boundaries merge into one
///      sample. Bounds the gas of a poke.
uint256 constant MAX_SAMPLE_WALK = 48;
/// @dev Largest squared simple return one observation may add to the EWMA, WAD: 1e36 = r of 1e9
///      (a 10^11 % move). Saturates the EWMA update so an absurd answer cannot overflow `poke`;
///      such a move trips the breaker and the volatility is capped anyway.
uint256 constant MAX_SQUARED_RETURN = 1e36;
// ---------------------------------------------------------------- margin engine bounds
/// @dev Markets the engine may list; bounds the gas of every equity computation (positions are a bitmask).
uint256 constant MAX_MARKETS = 16;
/// @dev Maintenance rate floor bounds: 0.1 % .. 50 %.
uint256 constant MIN_BASE_MMR = 0.001e18;
uint256 constant MAX_BASE_MMR = 0.5e18;
/// @dev Volatility weight bound: the vol term may be up to 10 σ·sqrt(horizon).
uint256 constant MAX_VOL_K = 10e18;
/// @dev Size weight bound: at most 100 % extra rate at a full-cap position.
uint256 constant MAX_SIZE_K = 1e18;
/// @dev Initial margin factor bounds: IM is 101 % .. 1000 % of MM.
uint256 constant MIN_IM_FACTOR = 1.01e18;
uint256 constant MAX_IM_FACTOR = 10e18;
/// @dev Stress volatility of new risk (IM's volatility floor) bound: up to MAX_VOLATILITY (1000 %).
uint256 constant MAX_IM_VOL_FLOOR = MAX_VOLATILITY;
/// @dev Trading fee cap: 1 % of notional.
uint256 constant MAX_FEE_RATE = 0.01e18;
/// @dev Smallest open-interest cap per side a market may have, WAD USD: 1 USD (the size term divides by it).
uint256 constant MIN_OI_CAP_USD = 1e18;
/// @dev Highest open-interest cap per side: 2^96 − 1 WAD USD (79 billion USD), so a market's valuation parameters fit
///      two storage slots (AccountLogic.MarketSlot).
uint256 constant MAX_OI_CAP_USD = type(uint96).max;
/// @dev Open interest per side may be up to 5x pool capital.
uint256 constant MAX_OI_CAP_FRACTION = 5e18;
/// @dev Funding rate cap bound: 10 % a day.
uint256 constant MAX_FUNDING_RATE = 0.1e18;
/// @dev Liquidation target health bounds: 101 % .. 300 %.
uint256 constant MIN_LIQ_TARGET = 1.01e18;
uint256 constant MAX_LIQ_TARGET = 3e18;
/// @dev Liquidation penalty cap: 10 % of closed notional.
uint256 constant MAX_LIQ_PENALTY = 0.1e18;
/// @dev Flat liquidation keeper reward cap: 1,000 USD.
uint256 constant MAX_KEEPER_REWARD = 1_000e18;
/// @dev Dust threshold cap: 10,000 USD of notional.
uint256 constant MAX_DUST_NOTIONAL = 10_000e18;
/// @dev Collateral sale discount cap: 20 %.
uint256 constant MAX_COLLATERAL_DISCOUNT = 0.2e18;
/// @dev Volatility horizon bounds: 1 hour .. 30 days.
uint256 constant MIN_VOL_HORIZON = 1 hours;
uint256 constant MAX_VOL_HORIZON = 30 days;

// ---------------------------------------------------------------- rebalancing
/// @dev Rebalance actions, bits of `RebalancePolicy.actions` and `RebalancePlan.action`.
uint8 constant TOP_UP = 1;
uint8 constant REDUCE = 2;
uint8 constant RELEASE = 4;
/// @dev Not an action but an order, for a policy with REDUCE (and usually TOP_UP): above health 1 a REDUCE restores
///      the target first and the reserve is not spent; the reserve tops up only what a reduce cannot do now — a
///      rescue below 1, or a restore before a round after the owner's own action (`ownerActedAt`). The
///      sweep (`npx hardhat sim:sweep`) showed REDUCE keeping more wealth than TOP_UP at 4x–5.5x in the FTX crash.
uint8 constant REDUCE_FIRST = 8;
/// @dev Every bit a policy may set.
uint8 constant ALL_ACTIONS = 15;
/// @dev Minimum gap between trigger and target and between target and release: 5 %, so a rebalance
///      lands well inside the band and fees cannot be farmed by bouncing on its edge.
uint256 constant MIN_REBALANCE_BAND = 0.05e18;
/// @dev Highest target health a policy may ask for: 10x the maintenance margin.
uint256 constant MAX_REBALANCE_TARGET = 10e18;
/// @dev A policy is stored in one slot (AccountLogic.PolicySlot; README "Storage layout"): its ratios in millionths,
///      24 bits each. Each ratio must be a whole number of millionths (1e12 in WAD: `PolicyRatioPrecision`).
uint256 constant POLICY_RATIO_UNIT = 1e12;
/// @dev Highest release ratio a policy may ask for: 16x the maintenance margin (24 bits of millionths hold < 16.78).
uint256 constant MAX_RELEASE_RATIO = 16e18;
/// @dev Most top-up assets one policy may name: 8 listing indices of 4 bits fill the policy slot's 32 bits.
uint256 constant MAX_POLICY_ASSETS = 8;
/// @dev Longest cooldown between rebalances: a day (longer would leave accounts unprotected).
uint256 constant MAX_REBALANCE_COOLDOWN = 1 days;
/// @dev Highest per-call keeper fee a policy may allow: 1,000 USD.
uint256 constant MAX_REBALANCE_FEE = 1_000e18;
/// @dev How far below target a RELEASE may leave health: 1 %, a tolerance for a module's rounding (the
///      Rebalancer itself lands at or above target).
uint256 constant RELEASE_HEALTH_OFFSET = 0.01e18;
/// @dev Most gas a rebalance fee may pay for: 5M (a batch pays per account).
uint256 constant MAX_REBALANCE_GAS_UNITS = 5_000_000;
/// @dev Most accounts one `checkUpkeep` returns (a `performUpkeep` of 50 rebalances fits a block).
uint256 constant MAX_UPKEEP_SIZE = 50;
/// @dev Most account ids one `checkUpkeep` scans (its window).
uint256 constant MAX_UPKEEP_SCAN = 2_000;
/// @dev Gas `checkUpkeep` keeps in hand: it stops scanning below this and returns what it found.
uint256 constant UPKEEP_CHECK_GAS_RESERVE = 300_000;
/// @dev Gas one `checkUpkeep` spends scanning at most: half of Chainlink Automation's usual 10M check limit.
uint256 constant UPKEEP_CHECK_GAS_BUDGET = 5_000_000;

// ---------------------------------------------------------------- liquidity pool
/// @dev Default seconds that LP shares minted by a deposit stay locked: 15 minutes (GLP's cooldown). Long
///      enough that no deposit → price step → redeem fits in one block or flash loan; short for an honest LP.
uint256 constant DEFAULT_HOLD_PERIOD = 15 minutes;
/// @dev Holding period bounds: at least a minute (a round trip never fits in one block), at most 7 days.
uint256 constant MIN_HOLD_PERIOD = 1 minutes;
uint256 constant MAX_HOLD_PERIOD = 7 days;

// ------------------------------------------------------------------ two-step orders (README "Orders")
/// @dev Longest an order may wait for its fill round: `deadline <= block.timestamp + MAX_ORDER_LIFETIME`. A day is
///      many heartbeats of any feed Ballast lists (the longest, 24 h, on some L2 feeds).
uint256 constant MAX_ORDER_LIFETIME = 1 days;
/// @dev Most orders pending at once per account (the pending list is walked when an order is settled).
uint256 constant MAX_PENDING_ORDERS = 8;
/// @dev Highest execution fee governance may set, WAD USD (converted to settlement-token units at `setOrderFee`).
uint256 constant MAX_ORDER_FEE_USD = 100e18;
/// @dev Most rounds after an order's recorded one that `OracleRouter.roundAfter` skips for having been published in
///      the request's own second (or before it): a feed publishes at most a few rounds per block.
uint256 constant MAX_ROUNDS_IN_REQUEST_SECOND = 4;
