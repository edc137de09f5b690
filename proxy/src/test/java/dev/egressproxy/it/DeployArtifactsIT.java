package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.Processes;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The files under deploy/ are checked by the real tools: promtool for config, rules and rule tests. */
class DeployArtifactsIT {

    @Test
    void prometheusConfigRulesAndRuleTestsPassPromtool() throws Exception {
        Processes.Result r = Processes.run(
                List.of("bash", Processes.projectRoot().resolve("deploy/prometheus/check.sh").toString()), null, 120);
        assertThat(r.exitCode()).as(r.output()).isZero();
        assertThat(r.output()).contains("SUCCESS");
    }
}
