package dev.egressproxy.guard;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** The arithmetic of the open-file budget; FdBudgetIT has the real process under a real limit. */
class FdBudgetTest {

    @Test
    void secondConnectAttemptsShareTheRoomLeftWithPipesAndNeverEatTheReserve() {
        // 1,000 files, 100 open at start: reserve 64, so 418 connections.
        FdBudget budget = new FdBudget(1000, 100, 10_000);
        assertThat(budget.maxConnections()).isEqualTo(418);
        int connections = 400; // 900 descriptors in use, past 1000 - 2 * 64 = 872
        assertThat(budget.tryAcquireSpare(connections)).as("no room left above twice the reserve").isFalse();

        connections = 300; // 700 in use: 172 descriptors for spares and pipes
        int spares = 0;
        while (budget.tryAcquireSpare(connections)) {
            spares++;
        }
        assertThat(spares).isEqualTo(172);
        assertThat(budget.sparesInUse()).isEqualTo(172);
        assertThat(budget.tryAcquirePipe(connections)).as("a pipe does not fit beside them").isFalse();

        budget.releaseSpare();
        budget.releaseSpare();
        assertThat(budget.tryAcquirePipe(connections)).as("two descriptors given back make one pipe").isTrue();
        assertThat(budget.tryAcquireSpare(connections)).isFalse();
        budget.releasePipe();
        assertThat(budget.tryAcquireSpare(connections)).isTrue();
        assertThat(budget.sparesInUse()).isEqualTo(171);
    }
}
