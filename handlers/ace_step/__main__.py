from handlers.ace_step.handler import main

main()
