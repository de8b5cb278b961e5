//! Shared counters in Redis or Valkey. Each step is one Lua script (atomic on the server) that
//! reads the server's clock (`TIME`), so processes with skewed clocks agree on windows and
//! lease expiry. A single Redis (or a primary with replicas) is expected, not a cluster.
//!
//! - Window: a hash `<prefix>rpm:<subject>` holding the window number `w` and its count `n`;
//!   the key expires two windows after its last hit.
//! - Slots: a sorted set `<prefix>slots:<subject>`, member = lease, score = expiry in ms;
//!   expired members are dropped before counting.
//! - Admission: one script checks every slot and window of a request, then takes them all or
//!   none (one round trip, and a refused request uses up nothing of another subject).

use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::{Ask, CounterEngine, EngineError, Hit, Refusal, Verdict, COMMAND_TIMEOUT};

const PREFIX: &str = "kiro-gateway:";

const HIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local index = math.floor(now / window)
local left = (index + 1) * window - now
local current = redis.call('HMGET', KEYS[1], 'w', 'n')
local count = 0
if tonumber(current[1]) == index then count = tonumber(current[2]) end
if count >= limit then return {0, left} end
redis.call('HSET', KEYS[1], 'w', index, 'n', count + 1)
redis.call('PEXPIRE', KEYS[1], window * 2)
return {1, left}
";

const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
";

/// KEYS: per ask its slots key then its window key. ARGV: window ms, lease ttl ms, then per ask
/// its rpm limit, its concurrency cap (0: none) and its lease. Returns `{0, 0}` when admitted,
/// else `{ask number from 1, 1}` for a full set of slots or `{ask number, 2, ms left}` for a
/// full window. Slots are checked before windows, as the step-by-step default does.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local index = math.floor(now / window)
local asks = #KEYS / 2
local function arg(i, n) return ARGV[2 + (i - 1) * 3 + n] end
local function count(key)
  local current = redis.call('HMGET', key, 'w', 'n')
  if tonumber(current[1]) == index then return tonumber(current[2]) end
  return 0
end
for i = 1, asks do
  local slots, cap, lease = KEYS[i * 2 - 1], tonumber(arg(i, 2)), arg(i, 3)
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    if not redis.call('ZSCORE', slots, lease) and redis.call('ZCARD', slots) >= cap then
      return {i, 1, 0}
    end
  end
end
for i = 1, asks do
  local limit = tonumber(arg(i, 1))
  if limit > 0 and count(KEYS[i * 2]) >= limit then
    return {i, 2, (index + 1) * window - now}
  end
end
for i = 1, asks do
  local slots, rpm = KEYS[i * 2 - 1], KEYS[i * 2]
  local limit, cap, lease = tonumber(arg(i, 1)), tonumber(arg(i, 2)), arg(i, 3)
  if cap > 0 then
    redis.call('ZADD', slots, now + ttl, lease)
    redis.call('PEXPIRE', slots, ttl)
  end
  if limit > 0 then
    redis.call('HSET', rpm, 'w', index, 'n', count(rpm) + 1)
    redis.call('PEXPIRE', rpm, window * 2)
  end
end
return {0, 0, 0}
";

const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
end
return #KEYS
";

/// See the module docs.
pub struct RedisCounters {
    connection: ConnectionManager,
    hit: Script,
    acquire: Script,
    admit: Script,
    renew: Script,
}

fn redacted(url: &str) -> String {
    crate::store::redact_url(url)
}

fn failed(error: redis::RedisError) -> EngineError {
    // The error text names the server and the command, never the URL's password.
    format!("redis: {error}")
}

impl RedisCounters {
    /// A client for `url` (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS is
    /// not built in). Connects lazily: a Redis that is down at start makes the process start
    /// degraded, not fail.
    pub fn connect(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("invalid REDIS_URL {}: {e}", redacted(url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("REDIS_URL {}: {e}", redacted(url)))?;
        Ok(RedisCounters {
            connection,
            hit: Script::new(HIT),
            acquire: Script::new(ACQUIRE),
            admit: Script::new(ADMIT),
            renew: Script::new(RENEW),
        })
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl CounterEngine for RedisCounters {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn hit(
        &self,
        subject: &str,
        limit: u32,
        window: Duration,
    ) -> BoxFuture<'_, Result<Hit, EngineError>> {
        let key = format!("{PREFIX}rpm:{subject}");
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let (admitted, left): (i64, i64) = self
                .hit
                .key(key)
                .arg(limit)
                .arg(millis(window))
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(if admitted == 1 {
                Hit::Admitted
            } else {
                Hit::Refused(Duration::from_millis(left.max(0).unsigned_abs()))
            })
        })
    }

    fn acquire(
        &self,
        subject: &str,
        cap: u32,
        lease: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<bool, EngineError>> {
        let key = format!("{PREFIX}slots:{subject}");
        let lease = lease.to_owned();
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let taken: i64 = self
                .acquire
                .key(key)
                .arg(cap)
                .arg(lease)
                .arg(millis(ttl))
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(taken == 1)
        })
    }

    fn admit<'a>(
        &'a self,
        asks: &'a [Ask],
        window: Duration,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Verdict, EngineError>> {
        let mut invocation = self.admit.prepare_invoke();
        invocation.arg(millis(window)).arg(millis(ttl));
        for ask in asks {
            invocation
                .key(format!("{PREFIX}slots:{}", ask.subject))
                .key(format!("{PREFIX}rpm:{}", ask.subject))
                .arg(ask.rpm_limit)
                .arg(ask.max_concurrency)
                .arg(&ask.lease);
        }
        let mut connection = self.connection.clone();
        Box::pin(async move {
            let (at, kind, left): (usize, i64, i64) = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            let Some(at) = at.checked_sub(1) else {
                return Ok(Verdict::Admitted);
            };
            let why = match kind {
                1 => Refusal::Concurrency,
                2 => Refusal::Rate(Duration::from_millis(left.max(0).unsigned_abs())),
                other => return Err(format!("redis: unexpected refusal kind {other}")),
            };
            Ok(Verdict::Refused { at, why })
        })
    }

    fn release(&self, subject: &str, lease: &str) -> BoxFuture<'_, Result<(), EngineError>> {
        let key = format!("{PREFIX}slots:{subject}");
        let lease = lease.to_owned();
        let mut connection = self.connection.clone();
        Box::pin(async move {
            redis::cmd("ZREM")
                .arg(key)
                .arg(lease)
                .query_async::<i64>(&mut connection)
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn renew(
        &self,
        held: &[(String, String)],
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), EngineError>> {
        let mut invocation = self.renew.prepare_invoke();
        invocation.arg(millis(ttl));
        for (subject, lease) in held {
            invocation.key(format!("{PREFIX}slots:{subject}"));
            invocation.arg(lease);
        }
        let mut connection = self.connection.clone();
        Box::pin(async move {
            invocation
                .invoke_async::<i64>(&mut connection)
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), EngineError>> {
        let mut connection = self.connection.clone();
        Box::pin(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map_err(failed)?;
            Ok(())
        })
    }
}
