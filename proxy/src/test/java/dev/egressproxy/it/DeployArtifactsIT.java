package dev.egressproxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import dev.egressproxy.testing.Processes;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The files under deploy/ are checked by the real tools: promtool for the Prometheus config, rules
 * and rule tests; kubectl kustomize, systemd-analyze, shellcheck and the launcher against the
 * built jar for the rest (deploy/check.sh).
 */
class DeployArtifactsIT {

    @Test
    void everyDeployArtefactPassesItsToolsAndTheLauncherDrainsCleanly() throws Exception {
        ProcessBuilder pb = new ProcessBuilder("bash", Processes.projectRoot().resolve("deploy/check.sh").toString())
                .redirectErrorStream(true);
        pb.environment().put("EGRESS_PROXY_JAR", JarIT.jar());
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        assertThat(p.waitFor(300, java.util.concurrent.TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).as(out).isZero();
        assertThat(out).containsPattern("\\d+ passed, 0 failed");
    }

    @Test
    void prometheusConfigRulesAndRuleTestsPassPromtool() throws Exception {
        Processes.Result r = Processes.run(
                List.of("bash", Processes.projectRoot().resolve("deploy/prometheus/check.sh").toString()), null, 120);
        assertThat(r.exitCode()).as(r.output()).isZero();
        assertThat(r.output()).contains("SUCCESS");
    }
}
