package dev.egressproxy.metrics;

import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.config.MeterFilter;
import io.micrometer.core.instrument.config.MeterFilterReply;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.netty4.NettyAllocatorMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.netty.buffer.PooledByteBufAllocator;

/**
 * The JVM, process and Netty buffer-pool meters from Micrometer's binders, adjusted so that the
 * scrape passes {@code promtool check metrics} without lint warnings: meters that come without a
 * description get one, {@code process.cpu.time} (rendered with an abbreviated unit) is dropped in
 * favour of {@code process_cpu_usage}, and {@code system.cpu.count} (a gauge whose name ends in
 * {@code _count}) is published as {@code system_cpu_logical}.
 */
public final class StandardBinders {

    static final MeterFilter LINT_CLEAN = new MeterFilter() {
        @Override
        public MeterFilterReply accept(Meter.Id id) {
            return id.getName().equals("process.cpu.time") ? MeterFilterReply.DENY : MeterFilterReply.NEUTRAL;
        }

        @Override
        public Meter.Id map(Meter.Id id) {
            Meter.Id mapped = id;
            if (mapped.getName().equals("system.cpu.count")) {
                mapped = mapped.withName("system.cpu.logical");
            }
            if (mapped.getDescription() == null || mapped.getDescription().isBlank()) {
                mapped = new Meter.Id(mapped.getName(), Tags.of(mapped.getTags()), mapped.getBaseUnit(),
                        "Micrometer meter " + mapped.getName(), mapped.getType());
            }
            return mapped;
        }
    };

    private StandardBinders() {
    }

    /**
     * Binds them to {@code registry}. Returns the GC binder, which holds JMX listeners and should be
     * closed with the registry.
     */
    public static AutoCloseable bind(MeterRegistry registry) {
        registry.config().meterFilter(LINT_CLEAN);
        new JvmMemoryMetrics().bindTo(registry);
        new JvmThreadMetrics().bindTo(registry);
        new ClassLoaderMetrics().bindTo(registry);
        new ProcessorMetrics().bindTo(registry);
        new UptimeMetrics().bindTo(registry);
        new FileDescriptorMetrics().bindTo(registry);
        new NettyAllocatorMetrics(PooledByteBufAllocator.DEFAULT).bindTo(registry);
        JvmGcMetrics gc = new JvmGcMetrics();
        gc.bindTo(registry);
        return gc;
    }
}
