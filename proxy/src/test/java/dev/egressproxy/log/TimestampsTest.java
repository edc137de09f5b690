package dev.egressproxy.log;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Instant;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class TimestampsTest {

    @Test
    void writesEveryMillisecondInstantExactlyAsInstantDoes() {
        long[] fixed = {0, 1, 999, 1000, 1001, 59_999, 60_000, 86_399_999, 951_782_400_000L /* 2000-02-29 */,
                1_795_851_033_625L, 1_795_851_033_000L, 1_795_851_033_100L, 253_402_300_799_999L /* 9999-12-31 */,
                -1, -1000, 253_402_300_800_000L /* year 10000 */};
        for (long ms : fixed) {
            assertThat(Timestamps.iso(ms)).as("%d ms", ms).isEqualTo(Instant.ofEpochMilli(ms).toString());
        }
        SplittableRandom random = new SplittableRandom(42);
        long t = 1_700_000_000_000L;
        for (int i = 0; i < 200_000; i++) {
            // Mostly small steps (the cache path), sometimes a jump (a new second, another thread's order).
            t += random.nextInt(10) == 0 ? random.nextLong(-5_000_000, 5_000_000) : random.nextInt(0, 400);
            assertThat(Timestamps.iso(t)).isEqualTo(Instant.ofEpochMilli(t).toString());
        }
    }
}
