package dev.egressproxy.metrics;

import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.netty4.NettyAllocatorMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.micrometer.core.instrument.config.MeterFilter;
import io.micrometer.core.instrument.config.MeterFilterReply;
import io.netty.buffer.PooledByteBufAllocator;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * The JVM, process and Netty buffer-pool meters from Micrometer's binders, adjusted so that the
 * scrape passes {@code promtool check metrics} without lint warnings: meters that come without a
 * description get one, {@code process.cpu.time} (rendered with an abbreviated unit) is dropped in
 * favour of {@code process_cpu_usage}, and {@code system.cpu.count} (a gauge whose name ends in
 * {@code _count}) is published as {@code system_cpu_logical}.
 */
public final class StandardBinders implements AutoCloseable {

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

    private final MeterRegistry registry;
    final CompletableFuture<Void> bound = new CompletableFuture<>(); // package-private for the tests
    private final CountDownLatch wanted = new CountDownLatch(1);
    private volatile JvmGcMetrics gc;
    private volatile Thread binder;

    private StandardBinders(MeterRegistry registry) {
        this.registry = registry;
        // Before any of the binders' meters exist, so that the filter applies to all of them.
        registry.config().meterFilter(LINT_CLEAN);
    }

    /** Binds them to {@code registry} now, on the calling thread. Close to release the GC binder's JMX listeners. */
    public static StandardBinders bind(MeterRegistry registry) {
        StandardBinders binders = new StandardBinders(registry);
        binders.bindNow();
        return binders;
    }

    /**
     * Binds them on a thread of their own once {@code delay} has passed, or at once when
     * {@link #whenBound()} is asked for first (the admin listener asks before every scrape, so a
     * scrape never misses them). Binding takes a fifth of a second of one core at start (JMX,
     * {@code /proc} and cgroup lookups); done later, it stays out of the way of the first CONNECT
     * (docs/performance.md#start-up).
     */
    public static StandardBinders bindLater(MeterRegistry registry, Duration delay) {
        StandardBinders binders = new StandardBinders(registry);
        Thread t = new Thread(() -> {
            try {
                binders.wanted.await(delay.toMillis(), TimeUnit.MILLISECONDS);
                binders.bindNow();
            } catch (InterruptedException e) {
                binders.bound.cancel(false);
            } catch (RuntimeException | Error e) {
                binders.bound.completeExceptionally(e);
                throw e;
            }
        }, "egress-meters");
        t.setDaemon(true);
        binders.binder = t;
        t.start();
        return binders;
    }

    /** Completes once the meters are bound; asks for them to be bound now if they are not yet. */
    public CompletableFuture<Void> whenBound() {
        wanted.countDown();
        return bound;
    }

    private void bindNow() {
        new JvmMemoryMetrics().bindTo(registry);
        new JvmThreadMetrics().bindTo(registry);
        new ClassLoaderMetrics().bindTo(registry);
        new ProcessorMetrics().bindTo(registry);
        new UptimeMetrics().bindTo(registry);
        new FileDescriptorMetrics().bindTo(registry);
        new NettyAllocatorMetrics(PooledByteBufAllocator.DEFAULT).bindTo(registry);
        JvmGcMetrics gcMetrics = new JvmGcMetrics();
        gcMetrics.bindTo(registry);
        gc = gcMetrics;
        bound.complete(null);
    }

    /** Stops a binding that has not happened yet and releases the GC binder's JMX listeners. */
    @Override
    public void close() throws InterruptedException {
        Thread t = binder;
        if (t != null) {
            t.interrupt();
            t.join();
        }
        JvmGcMetrics gcMetrics = gc;
        if (gcMetrics != null) {
            gcMetrics.close();
        }
    }
}
