package dev.egressproxy.metrics;

import static org.assertj.core.api.Assertions.assertThat;

import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class StandardBindersTest {

    private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);

    @AfterEach
    void close() {
        registry.close();
    }

    @Test
    void bindLaterBindsNothingUntilAskedThenEverything() throws Exception {
        try (StandardBinders binders = StandardBinders.bindLater(registry, Duration.ofHours(1))) {
            assertThat(registry.find("jvm.memory.used").meters()).isEmpty();
            assertThat(registry.scrape()).doesNotContain("jvm_");

            binders.whenBound().get(30, TimeUnit.SECONDS);

            assertThat(registry.find("jvm.memory.used").meters()).isNotEmpty();
            assertThat(registry.scrape()).contains("jvm_memory_used_bytes").contains("jvm_gc_")
                    .contains("system_cpu_logical").contains("netty_allocator_memory_used")
                    .doesNotContain("system_cpu_count").doesNotContain("process_cpu_time");
        }
    }

    @Test
    void bindLaterBindsByItselfOnceTheDelayHasPassed() throws Exception {
        try (StandardBinders binders = StandardBinders.bindLater(registry, Duration.ofMillis(50))) {
            // Waits on the future itself: whenBound() would ask for the binding.
            binders.bound.get(30, TimeUnit.SECONDS);
            assertThat(registry.find("jvm.memory.used").meters()).isNotEmpty();
        }
    }

    @Test
    void closingBeforeTheDelayBindsNothing() throws Exception {
        StandardBinders binders = StandardBinders.bindLater(registry, Duration.ofHours(1));
        binders.close();
        assertThat(binders.bound).isCancelled();
        assertThat(registry.find("jvm.memory.used").meters()).isEmpty();
    }

    @Test
    void bindBindsAtOnce() throws Exception {
        try (StandardBinders binders = StandardBinders.bind(registry)) {
            assertThat(binders.bound).isDone();
            assertThat(registry.find("jvm.memory.used").meters()).isNotEmpty();
        }
    }
}
