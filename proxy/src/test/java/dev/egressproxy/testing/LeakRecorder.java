package dev.egressproxy.testing;

import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.AppenderBase;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/** Logback appender that keeps every Netty leak report, for {@link LeakCheckExtension}. */
public final class LeakRecorder extends AppenderBase<ILoggingEvent> {

    static final List<String> LEAKS = new CopyOnWriteArrayList<>();

    @Override
    protected void append(ILoggingEvent event) {
        String message = event.getFormattedMessage();
        if (message != null && message.contains("LEAK")) {
            LEAKS.add(message);
        }
    }
}
