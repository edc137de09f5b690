package dev.egressproxy.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;
import org.opentest4j.AssertionFailedError;
import org.opentest4j.TestAbortedException;

/** The switch between skipping and failing on a missing program: skip on a machine, fail in CI. */
class RequiredTest {

    @Test
    void aPresentProgramGoesOnEverywhere() {
        Required.program(true, "unused", true);
        Required.program(true, "unused", false);
        assertThat(Required.programOrStandIn(true, "unused", true)).isTrue();
    }

    @Test
    void aMissingProgramSkipsOnAMachineAndFailsInCi() {
        assertThatThrownBy(() -> Required.program(false, "haproxy is not installed", false))
                .isInstanceOf(TestAbortedException.class).hasMessageContaining("haproxy is not installed");
        assertThatThrownBy(() -> Required.program(false, "haproxy is not installed", true))
                .isInstanceOf(AssertionFailedError.class)
                .hasMessageContaining("haproxy is not installed")
                .hasMessageContaining("CI=true, so a missing program fails the test instead of skipping it");
    }

    @Test
    void aStandInIsUsedOnAMachineButFailsInCi() {
        assertThat(Required.programOrStandIn(false, "htpasswd is not installed", false)).isFalse();
        assertThatThrownBy(() -> Required.programOrStandIn(false, "htpasswd is not installed", true))
                .isInstanceOf(AssertionFailedError.class).hasMessageContaining("htpasswd is not installed");
    }
}
