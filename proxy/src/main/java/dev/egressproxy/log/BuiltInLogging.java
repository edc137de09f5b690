package dev.egressproxy.log;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.PatternLayoutEncoder;
import ch.qos.logback.classic.spi.Configurator;
import ch.qos.logback.classic.spi.ConfiguratorRank;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.ConsoleAppender;
import ch.qos.logback.core.spi.ContextAwareBase;

/**
 * The proxy's Logback configuration, built in code instead of parsed from XML: Logback's XML
 * configurator loads an XML parser and several hundred classes, about 0.4 s of a start-up on one
 * core (docs/performance.md). Found through {@code META-INF/services} and run before Logback's own
 * configurators.
 *
 * <p>Two outputs: the application log ({@value #APP}) on stderr at {@code EGRESS_PROXY_LOG_LEVEL}
 * (default INFO), and the access log (logger {@link AccessLog#LOGGER}, appender {@value #ACCESS})
 * on stdout, the line as formatted and nothing else. Steps aside, so that Logback's usual search
 * applies, when {@code -Dlogback.configurationFile} is given or a {@code logback-test.xml} is on the
 * class path (the tests'). {@code config/logback.xml} is the same configuration as a file to start
 * from.
 */
@ConfiguratorRank(ConfiguratorRank.CUSTOM_HIGH_PRIORITY)
public final class BuiltInLogging extends ContextAwareBase implements Configurator {

    /** The application log appender; {@link LoggingSetup} switches its encoder to JSON. */
    public static final String APP = "APP";
    /** The access log appender. */
    public static final String ACCESS = "ACCESS";
    static final String APP_PATTERN = "%d{yyyy-MM-dd'T'HH:mm:ss.SSSXXX} %-5level [%thread] %logger{24} - %msg%n";

    @Override
    public ExecutionStatus configure(LoggerContext context) {
        if (System.getProperty("logback.configurationFile") != null
                || BuiltInLogging.class.getClassLoader().getResource("logback-test.xml") != null) {
            return ExecutionStatus.INVOKE_NEXT_IF_ANY;
        }
        Logger root = context.getLogger(Logger.ROOT_LOGGER_NAME);
        root.setLevel(Level.toLevel(System.getenv("EGRESS_PROXY_LOG_LEVEL"), Level.INFO));
        root.addAppender(console(context, APP, "System.err", APP_PATTERN));

        Logger access = context.getLogger(AccessLog.LOGGER);
        access.setLevel(Level.INFO);
        access.setAdditive(false);
        access.addAppender(console(context, ACCESS, "System.out", "%msg%n"));

        context.getLogger("io.netty").setLevel(Level.INFO);
        return ExecutionStatus.DO_NOT_INVOKE_NEXT_IF_ANY;
    }

    private static ConsoleAppender<ILoggingEvent> console(LoggerContext context, String name, String target,
            String pattern) {
        PatternLayoutEncoder encoder = new PatternLayoutEncoder();
        encoder.setContext(context);
        encoder.setPattern(pattern);
        encoder.start();
        ConsoleAppender<ILoggingEvent> appender = new ConsoleAppender<>();
        appender.setContext(context);
        appender.setName(name);
        appender.setTarget(target);
        appender.setEncoder(encoder);
        appender.start();
        return appender;
    }
}
