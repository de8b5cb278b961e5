//! Shared counters in Redis or Valkey. Each step is one Lua script (atomic on the server) that
//! reads the server's clock (`TIME`), so processes with skewed clocks agree on windows and
//! lease expiry. A single Redis (or a primary with replicas) is expected, not a cluster.
//!
//! - Window: a hash `<prefix>rpm:<subject>` holding the window number `w` and its count `n`;
//!   the key expires two windows after its last hit.
//! - Slots: a sorted set `<prefix>slots:<subject>`, member = lease, score = expiry in ms;
//!   expired members are dropped before counting.

use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::{CounterEngine, EngineError, Hit, COMMAND_TIMEOUT};

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
