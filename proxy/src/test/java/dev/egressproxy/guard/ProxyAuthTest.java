package dev.egressproxy.guard;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.egressproxy.config.ProxyConfig;
import dev.egressproxy.metrics.ProxyMetrics;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.springframework.security.crypto.bcrypt.BCrypt;

/** The checker of proxy credentials: its answers, its cache, its rate limit and its bounded queue. */
class ProxyAuthTest {

    private final SimpleMeterRegistry registry = new SimpleMeterRegistry();
    private final ProxyMetrics metrics = new ProxyMetrics(registry, 10, "test");
    private ProxyAuth auth;

    @AfterEach
    void close() {
        if (auth != null) {
            auth.close();
        }
    }

    private static ProxyConfig.Auth config(UsersFile users, int maxFailures, Duration window) {
        return new ProxyConfig.Auth(users, false, maxFailures, window, Duration.ofMinutes(1), 1, 8);
    }

    private static UsersFile users(int cost) throws Exception {
        return UsersFile.parse(Path.of("users"), "alice:" + BCrypt.hashpw("wonderland", BCrypt.gensalt("$2y", cost))
                + "\nbob:" + UsersFileTest.SHA256 + "\n", false);
    }

    private static String basic(String userPass) {
        return "Basic " + Base64.getEncoder().encodeToString(userPass.getBytes(StandardCharsets.UTF_8));
    }

    private ProxyAuth.Outcome check(ProxyConfig.Auth config, String header, InetAddress client) throws Exception {
        CompletableFuture<ProxyAuth.Outcome> later = new CompletableFuture<>();
        ProxyAuth.Outcome now = auth.check(config, header, client, Runnable::run, later::complete);
        return now != null ? now : later.get(10, TimeUnit.SECONDS);
    }

    private double failures(String reason) {
        return registry.get(ProxyMetrics.AUTH_FAILURES).tag("reason", reason).counter().count();
    }

    @Test
    void verifiesOffTheCallerThenAnswersFromTheCache() throws Exception {
        auth = new ProxyAuth(metrics, 1, 8);
        ProxyConfig.Auth config = config(users(4), 10, Duration.ofMinutes(1));
        InetAddress client = InetAddress.getLoopbackAddress();
        List<String> threads = new CopyOnWriteArrayList<>();
        CompletableFuture<ProxyAuth.Outcome> later = new CompletableFuture<>();
        ProxyAuth.Outcome now = auth.check(config, basic("alice:wonderland"), client, r -> {
            threads.add(Thread.currentThread().getName());
            r.run();
        }, later::complete);
        assertThat(now).isNull();
        assertThat(later.get(10, TimeUnit.SECONDS)).isEqualTo(new ProxyAuth.Outcome("alice", null));
        assertThat(threads).singleElement().asString().startsWith("egress-auth-");
        // The same header again: known at once, on the caller's thread.
        assertThat(auth.check(config, basic("alice:wonderland"), client, r -> { }, o -> { }))
                .isEqualTo(new ProxyAuth.Outcome("alice", null));
        // A reload (a new load of the file) forgets it.
        ProxyConfig.Auth reloaded = config(users(4), 10, Duration.ofMinutes(1));
        assertThat(auth.check(reloaded, basic("alice:wonderland"), client, r -> { }, o -> { })).isNull();
        assertThat(check(config, basic("bob:tunnel-Pass5"), client).user()).isEqualTo("bob");
    }

    @Test
    void unknownUserAndWrongPasswordFailAlikeAndAreCountedApart() throws Exception {
        auth = new ProxyAuth(metrics, 1, 8);
        ProxyConfig.Auth config = config(users(4), 10, Duration.ofMinutes(1));
        InetAddress client = InetAddress.getLoopbackAddress();
        assertThat(check(config, null, client).failure()).isEqualTo(ProxyAuth.Failure.MISSING);
        assertThat(check(config, "Bearer abc", client).failure()).isEqualTo(ProxyAuth.Failure.MALFORMED);
        assertThat(check(config, "Basic !!!", client).failure()).isEqualTo(ProxyAuth.Failure.MALFORMED);
        assertThat(check(config, basic("no-colon"), client).failure()).isEqualTo(ProxyAuth.Failure.MALFORMED);
        assertThat(check(config, basic("alice:Wonderland"), client).failure()).isEqualTo(ProxyAuth.Failure.BAD_PASSWORD);
        assertThat(check(config, basic("mallory:wonderland"), client).failure())
                .isEqualTo(ProxyAuth.Failure.UNKNOWN_USER);
        assertThat(failures("missing")).isEqualTo(1);
        assertThat(failures("malformed")).isEqualTo(3);
        assertThat(failures("bad_password")).isEqualTo(1);
        assertThat(failures("unknown_user")).isEqualTo(1);
        assertThat(failures("rate_limited")).isZero();
    }

    @Test
    void rateLimitsAnAddressAfterMaxFailuresUntilTheWindowEnds() throws Exception {
        auth = new ProxyAuth(metrics, 1, 8);
        ProxyConfig.Auth config = config(users(4), 3, Duration.ofSeconds(2));
        InetAddress guesser = InetAddress.getByName("10.0.0.9");
        InetAddress other = InetAddress.getByName("10.0.0.10");
        for (int i = 0; i < 3; i++) {
            assertThat(check(config, basic("alice:guess" + i), guesser).failure()).isEqualTo(ProxyAuth.Failure.BAD_PASSWORD);
        }
        // Even the right password is not checked now; no credentials are not a guess.
        assertThat(check(config, basic("alice:wonderland"), guesser).failure()).isEqualTo(ProxyAuth.Failure.RATE_LIMITED);
        assertThat(check(config, null, guesser).failure()).isEqualTo(ProxyAuth.Failure.MISSING);
        assertThat(check(config, basic("alice:wonderland"), other).user()).isEqualTo("alice");
        await().atMost(Duration.ofSeconds(10)).until(() -> check(config, basic("alice:wonderland"), guesser).allowed());
        assertThat(failures("rate_limited")).isGreaterThanOrEqualTo(1);
    }

    @Test
    void aLimitedAddressIsRefusedEvenWithCredentialsAnotherClientPutInTheCache() throws Exception {
        auth = new ProxyAuth(metrics, 1, 8);
        ProxyConfig.Auth config = config(users(4), 2, Duration.ofMinutes(10));
        InetAddress guesser = InetAddress.getByName("10.0.0.9");
        InetAddress other = InetAddress.getByName("10.0.0.10");
        assertThat(check(config, basic("alice:wonderland"), other).user()).isEqualTo("alice");
        for (int i = 0; i < 2; i++) {
            assertThat(check(config, basic("alice:guess" + i), guesser).failure()).isEqualTo(ProxyAuth.Failure.BAD_PASSWORD);
        }
        // Had the cache answered first, a limited guesser would learn at a SHA-256 per guess, with no
        // limit, which credentials are right.
        assertThat(auth.check(config, basic("alice:wonderland"), guesser, r -> { }, o -> { }))
                .isEqualTo(new ProxyAuth.Outcome(null, ProxyAuth.Failure.RATE_LIMITED));
        assertThat(auth.check(config, basic("alice:wonderland"), other, r -> { }, o -> { }))
                .isEqualTo(new ProxyAuth.Outcome("alice", null));
    }

    @Test
    void aFullQueueIsAnsweredAtOnce() throws Exception {
        auth = new ProxyAuth(metrics, 1, 1);
        ProxyConfig.Auth config = new ProxyConfig.Auth(users(12), false, 1000, Duration.ofMinutes(1), Duration.ZERO, 1, 1);
        InetAddress client = InetAddress.getLoopbackAddress();
        List<ProxyAuth.Outcome> answered = new CopyOnWriteArrayList<>();
        ProxyAuth.Outcome busy = null;
        for (int i = 0; i < 5 && busy == null; i++) {
            busy = auth.check(config, basic("alice:guess" + i), client, Runnable::run, answered::add);
        }
        assertThat(busy).isEqualTo(new ProxyAuth.Outcome(null, ProxyAuth.Failure.BUSY));
        assertThat(failures("busy")).isEqualTo(1);
    }
}
