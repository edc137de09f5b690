package dev.egressproxy.testing;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.AppenderBase;
import dev.egressproxy.log.AccessLog;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.awaitility.Awaitility;
import org.slf4j.LoggerFactory;

/** Collects access-log lines written (from any event loop) while it is attached. */
public final class AccessLogCapture implements AutoCloseable {

    private final Logger logger = (Logger) LoggerFactory.getLogger(AccessLog.LOGGER);
    private final List<String> lines = new CopyOnWriteArrayList<>();
    private final AppenderBase<ILoggingEvent> appender = new AppenderBase<>() {
        @Override
        protected void append(ILoggingEvent event) {
            lines.add(event.getFormattedMessage());
        }
    };

    public AccessLogCapture() {
        appender.start();
        logger.addAppender(appender);
    }

    public List<String> lines() {
        return List.copyOf(lines);
    }

    /** The line of the connection from 127.0.0.1:{@code clientPort}, waited for up to ten seconds. */
    public String lineOf(int clientPort) {
        String from = "client=127.0.0.1:" + clientPort + " ";
        return Awaitility.await().atMost(Duration.ofSeconds(10)).until(
                () -> lines.stream().filter(l -> l.contains(from)).findFirst().orElse(null), l -> l != null);
    }

    @Override
    public void close() {
        logger.detachAppender(appender);
        appender.stop();
    }
}
