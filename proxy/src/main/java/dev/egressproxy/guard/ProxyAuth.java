package dev.egressproxy.guard;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.metrics.ProxyMetrics;
import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * Proxy authentication ({@code auth.basic}): checks a request's {@code Proxy-Authorization}
 * against the users file of the configuration in force. One instance per server, shared by every
 * connection and thread.
 *
 * <p>The hot path costs a look at the client address's failures, a SHA-256 of the header value
 * and a map lookup: a value verified in the last {@code cache-ttl} under the same users file (its
 * {@link UsersFile#generation()}) is taken as it is. Anything else that needs a password hash
 * checked goes to a small pool of its own ({@code verify-threads}, with {@code verify-queue}
 * places), never to an I/O thread, so a burst of wrong passwords costs those threads and nobody's
 * tunnel; a full queue is answered at once ({@link Failure#BUSY}, 503). An unknown user is checked
 * against a real entry of the file, so it costs the same as a wrong password and both get the
 * same answer.
 *
 * <p>Failed guesses ({@code malformed}, {@code unknown_user}, {@code bad_password}) are counted per
 * client address (the PROXY protocol header's source when the listener reads one): after
 * {@code max-failures} within {@code failure-window}, the address's further attempts get
 * {@link Failure#RATE_LIMITED} without a check, even with credentials in the cache, until the
 * window that began with its first failure ends. A request without credentials is not a guess
 * (clients such as Java's send one first to learn the scheme) and never counts. The table of
 * addresses is bounded ({@value #MAX_ADDRESSES}, least recently failed dropped first), and so is
 * the cache ({@value #MAX_CACHED}).
 *
 * <p>Owns {@code egress_proxy_auth_failures_total{reason}}.
 */
public final class ProxyAuth implements AutoCloseable {

    /** The realm of the {@code Proxy-Authenticate} challenge. */
    public static final String REALM = "egress-proxy";

    static final int MAX_ADDRESSES = 10_000;
    static final int MAX_CACHED = 4096;

    /** Why a request did not authenticate: a fixed set, the {@code reason} label of the failure counter. */
    public enum Failure {
        /** No {@code Proxy-Authorization}. */
        MISSING("missing"),
        /** Not {@code Basic} with base64 of {@code user:password} in UTF-8. */
        MALFORMED("malformed"),
        /** The users file does not name the user (answered as {@link #BAD_PASSWORD} is). */
        UNKNOWN_USER("unknown_user"),
        BAD_PASSWORD("bad_password"),
        /** The client address failed too often within the window (429). */
        RATE_LIMITED("rate_limited"),
        /** The verification queue is full (503). */
        BUSY("busy");

        private final String label;

        Failure(String label) {
            this.label = label;
        }

        public String label() {
            return label;
        }

        /** Whether this failure is a guess that counts toward the client's rate limit. */
        boolean countsAsGuess() {
            return this == MALFORMED || this == UNKNOWN_USER || this == BAD_PASSWORD;
        }
    }

    /** The result of a check: the user, or why there is none. */
    public record Outcome(String user, Failure failure) {
        static Outcome allowed(String user) {
            return new Outcome(user, null);
        }

        static Outcome failed(Failure failure) {
            return new Outcome(null, failure);
        }

        public boolean allowed() {
            return failure == null;
        }
    }

    private record CacheKey(long generation, String digest) {
    }

    private record Cached(String user, long expiresAt) {
    }

    /** Failures of one address in its current window. */
    private static final class Window {
        long start;
        int failures;
    }

    private final ProxyMetrics metrics;
    private final ThreadPoolExecutor verifier;
    private final Map<CacheKey, Cached> cache = new ConcurrentHashMap<>();
    /** Guarded by itself; access order, so the least recently failing address is dropped first. */
    private final LinkedHashMap<InetAddress, Window> failures = new LinkedHashMap<>(64, 0.75f, true) {
        @Override
        protected boolean removeEldestEntry(Map.Entry<InetAddress, Window> eldest) {
            return size() > MAX_ADDRESSES;
        }
    };

    public ProxyAuth(ProxyMetrics metrics, int threads, int queue) {
        this.metrics = metrics;
        AtomicInteger n = new AtomicInteger();
        // Threads start on the first check, so a proxy without authentication never has any.
        this.verifier = new ThreadPoolExecutor(threads, threads, 60, TimeUnit.SECONDS, new ArrayBlockingQueue<>(queue),
                r -> {
                    Thread t = new Thread(r, "egress-auth-" + n.incrementAndGet());
                    t.setDaemon(true);
                    return t;
                });
        this.verifier.allowCoreThreadTimeOut(true);
    }

    /**
     * Checks {@code header} (the request's one {@code Proxy-Authorization} value, or null) from
     * {@code client} under {@code config}. Returns the outcome when it is known at once (a cached
     * success, no or garbled credentials, a rate-limited or busy answer). Otherwise returns null,
     * and {@code done} receives the outcome later, run by {@code loop} (the connection's event loop).
     */
    public Outcome check(ProxyConfig.Auth config, String header, InetAddress client, Executor loop,
            Consumer<Outcome> done) {
        if (header == null) {
            return fail(Failure.MISSING, client, config);
        }
        UsersFile users = config.users();
        long now = System.nanoTime();
        // Before the cache: a limited address must not learn that a guess is right because
        // someone else's request put those credentials in the cache (a SHA-256 per guess, no limit).
        if (limited(client, config, now)) {
            return fail(Failure.RATE_LIMITED, client, config);
        }
        CacheKey key = new CacheKey(users.generation(), digest(header));
        Cached hit = cache.get(key);
        if (hit != null) {
            if (now - hit.expiresAt < 0) {
                return Outcome.allowed(hit.user);
            }
            cache.remove(key, hit);
        }
        Credentials credentials = Credentials.parse(header);
        if (credentials == null) {
            return fail(Failure.MALFORMED, client, config);
        }
        try {
            verifier.execute(() -> {
                Outcome outcome = verify(users, credentials, key, config, client);
                try {
                    loop.execute(() -> done.accept(outcome));
                } catch (RejectedExecutionException e) {
                    // The event loop is shutting down: the connection goes with it.
                }
            });
        } catch (RejectedExecutionException e) {
            credentials.clear();
            return fail(Failure.BUSY, client, config);
        }
        return null;
    }

    private Outcome verify(UsersFile users, Credentials credentials, CacheKey key, ProxyConfig.Auth config,
            InetAddress client) {
        try {
            PasswordHash hash = users.hashOf(credentials.user);
            if (hash == null) {
                users.dummy().matches(credentials.password);
                return fail(Failure.UNKNOWN_USER, client, config);
            }
            if (!hash.matches(credentials.password)) {
                return fail(Failure.BAD_PASSWORD, client, config);
            }
            if (!config.cacheTtl().isZero()) {
                remember(key, new Cached(credentials.user, System.nanoTime() + config.cacheTtl().toNanos()));
            }
            return Outcome.allowed(credentials.user);
        } finally {
            credentials.clear();
        }
    }

    private void remember(CacheKey key, Cached value) {
        if (cache.size() >= MAX_CACHED) {
            long now = System.nanoTime();
            cache.values().removeIf(c -> now - c.expiresAt >= 0);
            if (cache.size() >= MAX_CACHED) {
                // Full of live entries: start again. It costs each client one check.
                cache.clear();
            }
        }
        cache.put(key, value);
    }

    private Outcome fail(Failure failure, InetAddress client, ProxyConfig.Auth config) {
        metrics.authFailure(failure.label());
        if (failure.countsAsGuess()) {
            long now = System.nanoTime();
            long window = config.failureWindow().toNanos();
            synchronized (failures) {
                Window w = failures.get(client);
                if (w == null || now - w.start >= window) {
                    w = new Window();
                    w.start = now;
                    failures.put(client, w);
                }
                w.failures++;
            }
        }
        return Outcome.failed(failure);
    }

    private boolean limited(InetAddress client, ProxyConfig.Auth config, long now) {
        synchronized (failures) {
            Window w = failures.get(client);
            if (w == null) {
                return false;
            }
            if (now - w.start >= config.failureWindow().toNanos()) {
                failures.remove(client);
                return false;
            }
            return w.failures >= config.maxFailures();
        }
    }

    /** Checks queued or running now (for tests and {@code /status}). */
    public int pending() {
        return verifier.getQueue().size() + verifier.getActiveCount();
    }

    @Override
    public void close() {
        verifier.shutdownNow();
    }

    private static String digest(String header) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            return HexFormat.of().formatHex(md.digest(header.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this JDK", e);
        }
    }

    /** The user and password of a Basic credential; the password bytes are wiped after the check. */
    static final class Credentials {
        final String user;
        final byte[] password;

        private Credentials(String user, byte[] password) {
            this.user = user;
            this.password = password;
        }

        /** {@code Basic base64(user:password)} (RFC 7617, UTF-8), or null if it is anything else. */
        static Credentials parse(String header) {
            String h = header.strip();
            int sp = h.indexOf(' ');
            if (sp < 0 || !h.substring(0, sp).toLowerCase(Locale.ROOT).equals("basic")) {
                return null;
            }
            byte[] decoded;
            try {
                decoded = Base64.getDecoder().decode(h.substring(sp + 1).strip());
            } catch (IllegalArgumentException e) {
                return null;
            }
            int colon = -1;
            for (int i = 0; i < decoded.length; i++) {
                if (decoded[i] == ':') {
                    colon = i;
                    break;
                }
            }
            if (colon <= 0) {
                Arrays.fill(decoded, (byte) 0);
                return null;
            }
            String user;
            try {
                CharBuffer chars = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(decoded, 0, colon));
                user = chars.toString();
            } catch (CharacterCodingException e) {
                Arrays.fill(decoded, (byte) 0);
                return null;
            }
            byte[] password = Arrays.copyOfRange(decoded, colon + 1, decoded.length);
            Arrays.fill(decoded, (byte) 0);
            return new Credentials(user, password);
        }

        void clear() {
            Arrays.fill(password, (byte) 0);
        }
    }
}
