package dev.egressproxy.log;

import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.JsonEncoder;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.Appender;
import ch.qos.logback.core.OutputStreamAppender;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Applies {@code logging.format}: switches the application log appender ({@code APP} in {@link BuiltInLogging}
 * and in config/logback.xml) to Logback's JSON encoder. Does nothing when the operator replaced the
 * Logback configuration and has no such appender.
 */
public final class LoggingSetup {

    private LoggingSetup() {
    }

    public static void useJsonApplicationLogs() {
        if (!(LoggerFactory.getILoggerFactory() instanceof LoggerContext context)) {
            return;
        }
        Appender<ILoggingEvent> appender = context.getLogger(Logger.ROOT_LOGGER_NAME).getAppender(BuiltInLogging.APP);
        if (appender instanceof OutputStreamAppender<ILoggingEvent> out) {
            JsonEncoder encoder = new JsonEncoder();
            encoder.setContext(context);
            // One flat object per line: time, level, thread, logger and the formatted message.
            encoder.setWithFormattedMessage(true);
            encoder.setWithMessage(false);
            encoder.setWithArguments(false);
            encoder.setWithContext(false);
            encoder.setWithSequenceNumber(false);
            encoder.setWithNanoseconds(false);
            encoder.start();
            out.stop();
            out.setEncoder(encoder);
            out.start();
        }
    }
}
