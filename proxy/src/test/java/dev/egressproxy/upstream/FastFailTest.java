package dev.egressproxy.upstream;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.config.ProxyConfig;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** The fast-fail state machine on a fake clock: threshold and window, cool-down, trials, bounds. */
class FastFailTest {

    static final ProxyConfig.FastFail DEFAULTS = new ProxyConfig.FastFail(true, 1, Duration.ofSeconds(60),
            Duration.ofSeconds(15));
    static final InetSocketAddress A = address("192.0.2.1", 443);
    static final InetSocketAddress B = address("192.0.2.2", 443);

    final AtomicLong clock = new AtomicLong(1_000_000_000_000L);
    final FastFail ff = new FastFail(clock::get);

    static InetSocketAddress address(String ip, int port) {
        try {
            return new InetSocketAddress(InetAddress.getByName(ip), port);
        } catch (java.net.UnknownHostException e) {
            throw new AssertionError(e);
        }
    }

    void advance(Duration d) {
        clock.addAndGet(d.toNanos());
    }

    @Test
    void nothingRecordedDialsEverythingWithoutAnAllocation() {
        assertThat(ff.select(List.of(A, B), DEFAULTS)).isSameAs(FastFail.UNCHANGED);
    }

    @Test
    void oneTimeoutSkipsTheAddressForTheCoolDownAndTheAnswerSaysWhenItTimedOut() {
        assertThat(ff.timedOut(A, DEFAULTS)).isTrue();
        advance(Duration.ofSeconds(12));

        FastFail.Selection s = ff.select(List.of(A), DEFAULTS);

        assertThat(s.dial()).isEmpty();
        assertThat(s.sinceTimeout()).isEqualTo(Duration.ofSeconds(12).toNanos());
        assertThat(s.untilRetry()).isEqualTo(Duration.ofSeconds(3).toNanos());
        assertThat(UpstreamConnector.fastFailText("cdn02.quay.io:443", s))
                .isEqualTo("cdn02.quay.io:443 timed out 12s ago; not retried for another 3s (fast-fail)");
    }

    @Test
    void aDeadAddressIsSkippedAndTheLiveOnesAreDialledInTheirOrder() {
        InetSocketAddress c = address("192.0.2.3", 443);
        ff.timedOut(B, DEFAULTS);

        FastFail.Selection s = ff.select(List.of(A, B, c), DEFAULTS);

        assertThat(s.dial()).containsExactly(A, c);
        assertThat(s.trials()).isEmpty();
        assertThat(s.skipped()).isEqualTo(1);
    }

    @Test
    void theSamePortOfAnotherAddressAndAnotherPortOfTheSameAddressAreNotAffected() {
        ff.timedOut(A, DEFAULTS);

        assertThat(ff.select(List.of(address("192.0.2.1", 80)), DEFAULTS)).isSameAs(FastFail.UNCHANGED);
        assertThat(ff.select(List.of(B), DEFAULTS)).isSameAs(FastFail.UNCHANGED);
    }

    @Test
    void belowTheThresholdWithinTheWindowNothingIsSkipped() {
        ProxyConfig.FastFail three = new ProxyConfig.FastFail(true, 3, Duration.ofSeconds(60), Duration.ofSeconds(15));
        assertThat(ff.timedOut(A, three)).isFalse();
        advance(Duration.ofSeconds(30));
        assertThat(ff.timedOut(A, three)).isFalse();
        assertThat(ff.select(List.of(A), three)).isSameAs(FastFail.UNCHANGED);
        advance(Duration.ofSeconds(29));

        assertThat(ff.timedOut(A, three)).as("third timeout 59 s after the first").isTrue();
        assertThat(ff.select(List.of(A), three).dial()).isEmpty();
    }

    @Test
    void timeoutsSpreadWiderThanTheWindowNeverAddUp() {
        ProxyConfig.FastFail two = new ProxyConfig.FastFail(true, 2, Duration.ofSeconds(60), Duration.ofSeconds(15));
        assertThat(ff.timedOut(A, two)).isFalse();
        advance(Duration.ofSeconds(61));
        assertThat(ff.timedOut(A, two)).as("the first one fell out of the window").isFalse();
        advance(Duration.ofSeconds(59));
        assertThat(ff.timedOut(A, two)).isTrue();
    }

    @Test
    void afterTheCoolDownOneRequestTriesTheAddressWhileTheOthersStillSkipIt() {
        ff.timedOut(A, DEFAULTS);
        advance(Duration.ofMillis(14_999));
        assertThat(ff.select(List.of(A), DEFAULTS).dial()).as("1 ms before the end").isEmpty();
        advance(Duration.ofMillis(1));

        FastFail.Selection trial = ff.select(List.of(A), DEFAULTS);
        FastFail.Selection other = ff.select(List.of(A), DEFAULTS);

        assertThat(trial.dial()).containsExactly(A);
        assertThat(trial.trials()).containsExactly(A);
        assertThat(other.dial()).isEmpty();
        assertThat(other.untilRetry()).isZero();
        assertThat(UpstreamConnector.fastFailText("h:443", other))
                .isEqualTo("h:443 timed out 15s ago; being retried by another request (fast-fail)");
        assertThat(ff.allDown(List.of(A))).as("still down while its trial runs").isTrue();
    }

    @Test
    void aTrialThatConnectsClearsTheAddressAtOnce() {
        ff.timedOut(A, DEFAULTS);
        advance(Duration.ofSeconds(15));
        ff.select(List.of(A), DEFAULTS);

        ff.answered(A);

        assertThat(ff.select(List.of(A), DEFAULTS)).isSameAs(FastFail.UNCHANGED);
        assertThat(ff.size()).isZero();
    }

    @Test
    void aTrialThatTimesOutStartsAnotherCoolDownEvenAboveAThresholdOfOne() {
        ProxyConfig.FastFail three = new ProxyConfig.FastFail(true, 3, Duration.ofSeconds(60), Duration.ofSeconds(15));
        ff.timedOut(A, three);
        ff.timedOut(A, three);
        ff.timedOut(A, three);
        advance(Duration.ofSeconds(15));
        assertThat(ff.select(List.of(A), three).trials()).containsExactly(A);
        advance(Duration.ofSeconds(10));

        assertThat(ff.timedOut(A, three)).isTrue();

        advance(Duration.ofSeconds(14));
        assertThat(ff.select(List.of(A), three).dial()).isEmpty();
        advance(Duration.ofSeconds(1));
        assertThat(ff.select(List.of(A), three).trials()).containsExactly(A);
    }

    @Test
    void aTrialThatLosesTheRaceStartsAnotherCoolDownAndOneNeverDialledIsFreeForTheNextRequest() {
        ff.timedOut(A, DEFAULTS);
        ff.timedOut(B, DEFAULTS);
        advance(Duration.ofSeconds(15));
        assertThat(ff.select(List.of(A, B), DEFAULTS).trials()).containsExactly(A, B);

        ff.trialAbandoned(A, true, DEFAULTS);
        ff.trialAbandoned(B, false, DEFAULTS);

        FastFail.Selection next = ff.select(List.of(A, B), DEFAULTS);
        assertThat(next.dial()).containsExactly(B);
        assertThat(next.trials()).containsExactly(B);
        advance(Duration.ofSeconds(15));
        assertThat(ff.select(List.of(A), DEFAULTS).trials()).containsExactly(A);
    }

    @Test
    void aDownAddressNobodyAsksForIsForgottenAWindowAfterItsCoolDown() {
        ff.timedOut(A, DEFAULTS);
        advance(Duration.ofSeconds(15 + 60));
        assertThat(ff.allDown(List.of(A))).isTrue();
        advance(Duration.ofNanos(1));

        assertThat(ff.allDown(List.of(A))).isFalse();
        assertThat(ff.select(List.of(A), DEFAULTS)).isSameAs(FastFail.UNCHANGED);
        assertThat(ff.size()).isZero();
    }

    @Test
    void aHostIsDownWhileAllItsAddressesAreAndGoesWhenOneAnswersOrItConnects() {
        ff.timedOut(A, DEFAULTS);
        ff.timedOut(B, DEFAULTS);
        assertThat(ff.hostDown("cdn.test:443", "cdn.test", List.of(A, B))).isTrue();
        assertThat(ff.downHosts()).containsExactly("cdn.test");

        ff.answered(B);

        assertThat(ff.downHosts()).isEmpty();
        ff.timedOut(B, DEFAULTS);
        assertThat(ff.downHosts()).as("the record went with the first answer").isEmpty();
        ff.hostDown("cdn.test:443", "cdn.test", List.of(A, B));
        ff.hostConnected("cdn.test:443");
        assertThat(ff.downHosts()).isEmpty();
    }

    @Test
    void turnedOffItForgetsEverythingAndRecordsNothing() {
        ProxyConfig.FastFail off = new ProxyConfig.FastFail(false, 1, Duration.ofSeconds(60), Duration.ofSeconds(15));
        ff.timedOut(A, DEFAULTS);
        ff.hostDown("a:443", "a", List.of(A));

        assertThat(ff.select(List.of(A), off)).isSameAs(FastFail.UNCHANGED);
        assertThat(ff.timedOut(A, off)).isFalse();
        assertThat(ff.size()).isZero();
        assertThat(ff.downHosts()).isEmpty();
    }

    @Test
    void theAddressCountIsCappedDroppingTheOldestWhenNoneHasExpired() {
        InetSocketAddress first = address("10.0.0.1", 443);
        ff.timedOut(first, DEFAULTS);
        for (int i = 1; i < FastFail.MAX_ADDRESSES; i++) {
            advance(Duration.ofMillis(1));
            ff.timedOut(address("10.0." + (i >> 8) + "." + (i & 0xff), 8443), DEFAULTS);
        }
        assertThat(ff.size()).isEqualTo(FastFail.MAX_ADDRESSES);

        ff.timedOut(A, DEFAULTS);

        assertThat(ff.size()).isEqualTo(FastFail.MAX_ADDRESSES);
        assertThat(ff.allDown(List.of(A))).isTrue();
        assertThat(ff.allDown(List.of(first))).as("the oldest went").isFalse();
    }
}
