package dev.egressproxy;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

class ClassDataTrainingTest {

    private final ByteArrayOutputStream out = new ByteArrayOutputStream();
    private final ByteArrayOutputStream err = new ByteArrayOutputStream();

    private int run(String... args) throws Exception {
        return Main.run(args, Map.of(), new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
    }

    @Test
    void withSecondsTheRoundsAreFollowedByLoadOfEveryKind() throws Exception {
        assertThat(run("--cds-training", "1")).as(err.toString(StandardCharsets.UTF_8)).isZero();
        Matcher m = Pattern.compile("egress-proxy --cds-training: 3 rounds of tunnel, forward, refusal and admin requests done; "
                + "then in 1 s (\\d+) tunnels, (\\d+) forwarded requests and (\\d+) refusals").matcher(out.toString(StandardCharsets.UTF_8));
        assertThat(m.find()).as(out.toString(StandardCharsets.UTF_8)).isTrue();
        assertThat(Long.parseLong(m.group(1))).isPositive();
        assertThat(Long.parseLong(m.group(2))).isPositive();
        assertThat(Long.parseLong(m.group(3))).isPositive();
    }

    @Test
    void anArgumentOtherThanSecondsIsAUsageError() throws Exception {
        assertThat(run("--cds-training", "soon")).isEqualTo(Main.EXIT_USAGE);
        assertThat(err.toString(StandardCharsets.UTF_8))
                .contains("--cds-training takes at most one argument, the seconds of load after its rounds");
    }
}
