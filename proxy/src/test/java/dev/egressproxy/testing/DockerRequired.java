package dev.egressproxy.testing;

import org.junit.jupiter.api.extension.ConditionEvaluationResult;
import org.junit.jupiter.api.extension.ExecutionCondition;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.testcontainers.DockerClientFactory;

/**
 * Runs a test class only where a Docker engine answers; elsewhere the class is skipped with a
 * message that says so and where the same scenarios run instead.
 */
public final class DockerRequired implements ExecutionCondition {

    private static final String NO_DOCKER = "SKIPPED: no Docker engine on this machine, so the Testcontainers "
            + "scenarios cannot run here; e2e/run.sh runs the same scenarios with Debian's docker-registry, nginx "
            + "and skopeo instead";
    private static Boolean available;

    @Override
    public ConditionEvaluationResult evaluateExecutionCondition(ExtensionContext context) {
        if (dockerAvailable()) {
            return ConditionEvaluationResult.enabled("a Docker engine is available");
        }
        if (context.getTestMethod().isEmpty()) {
            // Said once per class, in the build output, not only in the report.
            System.out.println(context.getDisplayName() + ": " + NO_DOCKER);
        }
        return ConditionEvaluationResult.disabled(NO_DOCKER);
    }

    private static synchronized boolean dockerAvailable() {
        if (available == null) {
            try {
                available = DockerClientFactory.instance().isDockerAvailable();
            } catch (RuntimeException | Error e) {
                available = false;
            }
        }
        return available;
    }
}
